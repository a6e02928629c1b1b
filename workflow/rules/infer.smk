# Score every object of every tile with every task's model; gather into one catalog.


rule infer:
    input:
        stamps="results/stamps/{tile}.h5",
        models=expand("results/models/{task}.pt", task=TASKS),
    output:
        "results/scores/{tile}.fits",
    params:
        cfg=cfg("infer", "train"),
    conda:
        ENV
    log:
        "logs/infer/{tile}.log",
    benchmark:
        "results/benchmarks/infer/{tile}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "{PY}.infer --config-json {params.cfg:q} --stamps {input.stamps:q} "
        "--models {input.models:q} --out {output:q} 2> {log:q}"


rule gather:
    input:
        expand("results/scores/{tile}.fits", tile=TILES),
    output:
        catalog="results/catalog.fits",
        csv="results/catalog.csv",
        candidates=expand("results/candidates/{task}.csv", task=TASKS),
    params:
        cfg=cfg("tasks", "infer"),
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
