"""The seed's morning routine: print what is due, recall it on paper, mark it, see progress.

log.py keeps the learner's marks (SQLite); schedule.py turns them into today's due sheets
(FSRS per panel, new sheets in the seed's order); pack.py prints the morning pack;
progress.py summarises, plots, exports and imports; cli.py is `mlgrind morning | mark |
progress`.
"""
