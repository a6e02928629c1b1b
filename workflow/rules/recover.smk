# Known-lens recovery: only when survey.known_lenses is set (a table, the mock writes one; or
# lenscat, shipped inside skysift). Known lenses the models trained on (labelled positives of
# the lens task in train/val) are counted apart, hence the split and labels.


if config["survey"]["known_lenses"]:

    rule recover:
        input:
            catalog=paths.CATALOG,
            rejects=paths.REJECTS,
            split=paths.SPLIT,
            labels=plan.labels_files(config),
            known_lenses=plan.known_lenses_files(config),
            survey_catalog=config["survey"]["catalog"],
        output:
            table=paths.KNOWN_LENSES,
            summary=paths.KNOWN_LENSES_SUMMARY,
        params:
            cfg=cfg("survey", "tasks", "models", "training_set", "infer", "evaluate"),
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
            "--rejects {input.rejects:q} --split {input.split:q} --out {output.table:q} "
            "--summary {output.summary:q} 2> {log:q}"
