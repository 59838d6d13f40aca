"""Research exports: pseudonymised files, a data dictionary, a codebook and a manifest.

`schema` says what each file holds, `rows` reads the database (streamed), `writers` writes
CSV / JSON Lines / Parquet, and `run` puts one export together and verifies it.
"""
