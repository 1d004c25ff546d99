"""Code the experiment scripts share (the scripts themselves are the files in experiments/)."""
