# Known-lens recovery: only when survey.known_lenses names a table (the mock writes one).


def recover_targets():
    """Outputs of rule recover for rule all: [] when survey.known_lenses is null."""
    if not config["survey"]["known_lenses"]:
        return []
    return ["results/known_lenses.csv", "results/known_lenses.json"]


if config["survey"]["known_lenses"]:

    rule recover:
        input:
            catalog="results/catalog.fits",
            rejects="results/rejects.ecsv",
            known_lenses=known_lenses_file(),
            survey_catalog=config["survey"]["catalog"],
        output:
            table="results/known_lenses.csv",
            summary="results/known_lenses.json",
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
            "{PY}.recover --config-json {params.cfg:q} --catalog {input.catalog:q} "
            "--rejects {input.rejects:q} --out {output.table:q} --summary {output.summary:q} "
            "2> {log:q}"
