// The pages' maths (arithmatex's \( \) and \[ \]) and the notebooks' ($ and $$), typeset by MathJax 3.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
};
document$.subscribe(() => { if (MathJax.typesetPromise) { MathJax.typesetPromise(); } });
