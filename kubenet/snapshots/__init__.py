"""Whole-cluster snapshots: every VM at one moment, or none.

  snaprecord    what each snapshot is: its record, names, what changed since, what was cut short
  snapjobs      a snapshot's QMP side: its drives, its jobs, every VM paused together
  snapshot      live or stopped, all VMs or none; a command cut short undone or finished: `invoke snapshot`
"""
