# The built-in mock survey: writes tiles, catalog and truth where survey: says.
if config["survey"]["kind"] == "mock":

    rule mock:
        output:
            tiles=_mock.tile_paths(config),
            catalog=config["survey"]["catalog"],
            labels=labels_file(),
        params:
            cfg=cfg("survey", "mock"),
        conda:
            ENV
        log:
            "logs/mock.log",
        benchmark:
            "results/benchmarks/mock.tsv"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        shell:
            "{PY}.mock --config-json {params.cfg:q} 2> {log:q}"
