# Metrics on the test split with bootstrap intervals; ROC, binned completeness, purity at the
# stated prevalence and reliability figures, registered for `snakemake --report`.


rule evaluate:
    input:
        catalog=plan.catalog_path(config),
        split=paths.SPLIT,
        labels=plan.labels_files(config),
        model_metrics=plan.model_metrics_files(config),
    output:
        metrics=paths.METRICS,
        roc=report(paths.ROC, caption="../report/evaluate_roc.rst", category="Evaluation"),
        completeness=report(
            paths.COMPLETENESS,
            caption="../report/evaluate_completeness.rst",
            category="Evaluation",
        ),
        purity=report(
            paths.PURITY, caption="../report/evaluate_purity.rst", category="Evaluation"
        ),
        reliability=report(
            paths.RELIABILITY,
            caption="../report/evaluate_reliability.rst",
            category="Evaluation",
        ),
    params:
        **cfg_params("survey", "tasks", "models", "evaluate"),
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
        "python -m skysift evaluate --config-json {params.cfg:q} --catalog {input.catalog:q} "
        "--split {input.split:q} --out {output.metrics:q} --roc {output.roc:q} "
        "--completeness {output.completeness:q} --purity {output.purity:q} "
        "--reliability {output.reliability:q} --model-metrics {input.model_metrics:q} 2> {log:q}"
