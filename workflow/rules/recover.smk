# Known-lens recovery: only when survey.known_lenses is set (a table, the mock writes one; or
# lenscat, shipped inside skysift). Known lenses the models trained on (positive train/val
# rows of the lens task's training set) are counted apart, hence the training set (none when
# every lens model is an imported checkpoint).

import shlex

if config["survey"]["known_lenses"]:
    LENS_TASK = config["training_set"]["lens_task"]
    RECOVER_TRAINSET = (
        [paths.TRAINSET.format(task=LENS_TASK)]
        if any(s.task == LENS_TASK and not s.checkpoint for s in MODEL_SPECS)
        else []
    )

    rule recover:
        input:
            catalog=plan.catalog_path(config),
            rejects=paths.REJECTS,
            trainset=RECOVER_TRAINSET,
            known_lenses=plan.known_lenses_files(config),
            survey_catalog=config["survey"]["catalog"],
        output:
            table=paths.KNOWN_LENSES,
            summary=paths.KNOWN_LENSES_SUMMARY,
        params:
            **cfg_params("survey", "tasks", "models", "training_set", "infer", "evaluate"),
            trainset=" ".join(f"--trainset {shlex.quote(p)}" for p in RECOVER_TRAINSET),
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
            "--rejects {input.rejects:q} {params.trainset} --out {output.table:q} "
            "--summary {output.summary:q} 2> {log:q}"
