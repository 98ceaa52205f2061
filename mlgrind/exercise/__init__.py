"""The seed's "slow & painful" practice: NumPy scaffolds graded against the reference package.

`mlgrind exercise start NAME` writes NAME.py (the contract: signatures and docstrings in suffix
notation, `raise NotImplementedError` bodies) and test_NAME.py; `mlgrind exercise check NAME`
runs the same checks the test file runs and records the result in DIR/.mlgrind-progress.json.

    catalog   the exercises in the seed's order (topics/ holds each one's contract and checks)
    compare   the comparisons every check makes, and the messages that teach
    grade     load the learner's module, run the checks, turn exceptions into messages
    scaffold  write NAME.py and test_NAME.py
    progress  the small local progress file
    cli       the `mlgrind exercise` commands

Expected values always come from `mlgrind.ref`: the reference functions are the solutions.
"""
