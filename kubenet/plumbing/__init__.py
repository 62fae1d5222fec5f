"""Plumbing, the ground floor: what every other package stands on, and nothing of kubenet's own above it.

  errors        one exception class per kind of user error, each with a hint
  process       the one place that runs, watches and signals programs; the one pid-file reader
  parallel      one thing done for many VMs at once, Ctrl-C heard
  fsutil        atomic writes, private directories, locks
  yamltext      YAML as kubenet reads users' files: safe, a key given twice refused, a bomb refused
  qmp           the one QMP client: commands and events, each within a time bound
"""
