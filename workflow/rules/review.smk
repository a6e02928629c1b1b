# Candidate review: each task's ranked candidates as an HTML gallery of colour composites
# (registered for `snakemake --report`) and a grading sheet (skysift grades); beside the
# candidates, a random sample in bins of score and known lenses as checks, drawn from the
# catalog, with each page object's source and weight in {task}_sample.csv.


rule review:
    input:
        candidates=paths.CANDIDATES,
        catalog=paths.CATALOG,
        cutouts=per_shard(paths.CUTOUTS),
        metrics=paths.METRICS,
    output:
        html=report(
            paths.REVIEW_HTML,
            caption="../report/review_gallery.rst",
            category="Candidates",
            labels={"task": "{task}", "file": "gallery"},
        ),
        sheet=report(
            paths.REVIEW_SHEET,
            caption="../report/review_sheet.rst",
            category="Candidates",
            labels={"task": "{task}", "file": "grading sheet"},
        ),
        sample=paths.REVIEW_SAMPLE,
    params:
        **cfg_params("tasks", "models", "review", "training_set"),
    conda:
        ENV
    log:
        "logs/review/{task}.log",
    benchmark:
        "results/benchmarks/review/{task}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m skysift review --config-json {params.cfg:q} --task {wildcards.task} "
        "--candidates {input.candidates:q} --cutouts {input.cutouts:q} "
        "--html {output.html:q} --sheet {output.sheet:q} --metrics {input.metrics:q} "
        "--catalog {input.catalog:q} --sample {output.sample:q} 2> {log:q}"
