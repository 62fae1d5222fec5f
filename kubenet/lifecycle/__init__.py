"""The cluster's life across its hosts, this one among them: what the tasks call.

  conduct       up, start, stop, down and restart: one job per host at once, around them the
                snapshot a command cut short, the cables and the tunnel
  status        what `ls` shows: a row per VM (every host's) and the notes below the table
  remove        `reset` of one VM's disk, `destroy` of the whole cluster
"""
