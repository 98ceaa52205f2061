"""The seed's "slow & painful" practice: NumPy scaffolds graded against the reference package.

`mlgrind exercise start NAME` writes NAME.py (the contract: signatures and docstrings in suffix
notation, `raise NotImplementedError` bodies) and test_NAME.py; `mlgrind exercise check NAME`
runs the same checks the test file runs and records the result in DIR/.mlgrind-progress.json.
Both run the learner's code in a separate process with a time limit per check, a memory limit
and a cap on printing, and refuse a solution that imports the answer key (mlgrind.ref).

    catalog   the exercises in the seed's order (topics/ holds each one's contract and checks)
    compare   the comparisons every check makes, and the messages that teach
    grade     run the checks on the learner's module in a protected child process; every
              failure (exception, timeout, exit, crash) becomes one message
    scaffold  write NAME.py and test_NAME.py
    progress  the small local progress file: attempts, hints seen; a damaged one set aside
    cli       the `mlgrind exercise` commands

Expected values always come from `mlgrind.ref`: the reference functions are the solutions.
"""
