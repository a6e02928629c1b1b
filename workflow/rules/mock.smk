# The built-in mock survey: writes tiles, catalog, truth and known lenses where survey: says.


if config["survey"]["kind"] == "mock":

    rule mock:
        output:
            tiles=plan.survey_files(config),
            catalog=config["survey"]["catalog"],
            labels=plan.labels_files(config),
            known_lenses=plan.known_lenses_files(config),
        params:
            **cfg_params("survey", "mock"),
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
            "python -m skysift mock --config-json {params.cfg:q} 2> {log:q}"
