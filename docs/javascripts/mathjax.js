// The pages' maths (arithmatex's \( \) and \[ \]) and the notebooks' ($ and $$), typeset by MathJax 3,
// which the site serves itself (javascripts/mathjax/, put there by docs/hooks/offline.py).
// Only arithmatex's spans and the notebooks' Markdown cells are read: a dollar sign in prose, code
// or a cell's output stays a dollar sign.
const mathsContainers = [".arithmatex", ".jp-MarkdownOutput"];
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  startup: { elements: mathsContainers },
};
document$.subscribe(() => { if (MathJax.typesetPromise) { MathJax.typesetPromise(mathsContainers); } });
