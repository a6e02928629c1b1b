# Metrics on the test split with bootstrap intervals; ROC, binned completeness, purity at the
# stated prevalence and reliability figures, registered for `snakemake --report`.


rule evaluate:
    input:
        catalog="results/catalog.fits",
        split="results/split.fits",
        labels=labels_file(),
    output:
        metrics="results/metrics.json",
        roc=report("results/roc.png", caption="../report/evaluate_roc.rst", category="Evaluation"),
        completeness=report(
            "results/completeness.png",
            caption="../report/evaluate_completeness.rst",
            category="Evaluation",
        ),
        purity=report(
            "results/purity.png", caption="../report/evaluate_purity.rst", category="Evaluation"
        ),
        reliability=report(
            "results/reliability.png",
            caption="../report/evaluate_reliability.rst",
            category="Evaluation",
        ),
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
        "--split {input.split:q} --out {output.metrics:q} --roc {output.roc:q} "
        "--completeness {output.completeness:q} --purity {output.purity:q} "
        "--reliability {output.reliability:q} 2> {log:q}"
