# Metrics on the test split with bootstrap intervals, and ROC curves.


rule evaluate:
    input:
        catalog="results/catalog.fits",
        split="results/split.fits",
        labels=labels_file(),
    output:
        metrics="results/metrics.json",
        roc="results/roc.png",
    params:
        cfg=cfg("survey", "tasks", "models", "evaluate"),
    conda:
        ENV
    log:
        "logs/evaluate.log",
    benchmark:
        "results/benchmarks/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "{PY}.evaluate --config-json {params.cfg:q} --catalog {input.catalog:q} "
        "--split {input.split:q} --out {output.metrics:q} --roc {output.roc:q} 2> {log:q}"
