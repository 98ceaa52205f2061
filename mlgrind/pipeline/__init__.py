"""The sheet pipeline, a small compiler: each module is a stage, in the order they run.

    load      YAML → data, with the file:line:col of every value      (load.py)
    validate  data → schema models, and the checks across files       (schema.py, blocks.py, validate.py)
    compute   `${ calc.f(…) }` → values from the reference package    (compute.py; registries in
              mlgrind/facts/ and mlgrind/figures/)
    render    models → HTML views of sheets, and notes of cards       (render.py, markup.py, maths.py,
              blocks.py; deck.py)
    write     views → PDFs, the .apkg and its ledger, put in place    (pdf.py, deck.py, ledger.py,
              write.py)

`build.py` is a build, top to bottom: when nothing changed since the last one it stops there
(`fresh.py`), else `compiler.py` runs the stages and `write.py` puts what they made in place;
`problems.py` is how every stage reports what is wrong.
"""
