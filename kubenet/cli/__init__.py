"""The commands: kubenet's invoke tasks, and the `kubenet` program that runs them.

  glue          what the tasks share: one-line errors, option readers, tables, progress lines,
                the argument that takes every path typed (`cp`)
  tasks         the invoke tasks, ten lines each at most (tasks.py in the checkout re-exports them)
  program       the `kubenet` command: the same tasks as a program of their own
"""
