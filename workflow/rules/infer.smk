# Score every object of every shard with every named model; gather into one catalog.

# infer.select cuts on survey.catalog columns: the catalog is then an input of every shard.
SELECT_INPUTS = [config["survey"]["catalog"]] if config["infer"]["select"] else []


rule infer:
    input:
        stamps="results/stamps/{shard}.h5",
        models=MODEL_FILES,
        catalog=SELECT_INPUTS,
    output:
        "results/scores/{shard}.fits",
    params:
        cfg=cfg("infer", "train", "survey"),
    conda:
        ENV
    log:
        "logs/infer/{shard}.log",
    benchmark:
        "results/benchmarks/infer/{shard}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "{PY}.infer --config-json {params.cfg:q} --stamps {input.stamps:q} "
        "--models {input.models:q} --out {output:q} 2> {log:q}"


rule gather:
    input:
        per_shard("results/scores/{shard}.fits"),
    output:
        catalog="results/catalog.fits",
        csv="results/catalog.csv",
        candidates=expand("results/candidates/{task}.csv", task=TASKS),
    params:
        cfg=cfg("tasks", "infer", "models", "evaluate"),
    conda:
        ENV
    log:
        "logs/gather.log",
    benchmark:
        "results/benchmarks/gather.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    shell:
        "{PY}.gather --config-json {params.cfg:q} --scores {input:q} --out {output.catalog:q} "
        "--csv {output.csv:q} --candidates-dir results/candidates 2> {log:q}"
