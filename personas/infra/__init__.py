"""Infrastructure every package of ours may import: the offline assets inside registry packages (`assets`) and
whole-file writes (`files`). It sits in personas/, the lowest package of the fixed layout (DESIGN.md: evals ->
simulator -> personas), because the layout has no package below it; this subpackage keeps it apart from the
persona domain, and it imports nothing else of ours. recsys imports nothing of ours, so its callers pass
`files.write_whole` in. Import from the modules; this file imports nothing.
"""
