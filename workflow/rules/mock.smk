# The built-in mock survey: writes tiles, catalog, truth and known lenses where survey: says.


def known_lenses_file():
    """[survey.known_lenses] when set (the mock writes it), else []; check and recover read it."""
    return [config["survey"]["known_lenses"]] if config["survey"]["known_lenses"] else []


if config["survey"]["kind"] == "mock":

    rule mock:
        output:
            tiles=_mock.tile_paths(config),
            catalog=config["survey"]["catalog"],
            labels=labels_file(),
            known_lenses=known_lenses_file(),
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
