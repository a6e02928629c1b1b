# Known-lens recovery: only when survey.known_lenses names a table (the mock writes one).


if config["survey"]["known_lenses"]:

    rule recover:
        input:
            catalog=paths.CATALOG,
            rejects=paths.REJECTS,
            known_lenses=plan.known_lenses_files(config),
            survey_catalog=config["survey"]["catalog"],
        output:
            table=paths.KNOWN_LENSES,
            summary=paths.KNOWN_LENSES_SUMMARY,
        params:
            **cfg_params("survey", "tasks", "models", "training_set", "infer", "evaluate"),
        conda:
            ENV
        log:
            "logs/recover.log",
        benchmark:
            "results/benchmarks/recover.tsv"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=10,
        shell:
            "python -m skysift recover --config-json {params.cfg:q} --catalog {input.catalog:q} "
            "--rejects {input.rejects:q} --out {output.table:q} --summary {output.summary:q} "
            "2> {log:q}"
