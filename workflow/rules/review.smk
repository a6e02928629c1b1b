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


# More like this (config similar; docs/review.md): the nearest neighbours of query objects in
# the embeddings (infer.embeddings), a linear probe and a 2-D map; rule all asks for them
# only when similar.queries or similar.grades is given. The neighbour list is shown and
# graded by the review step like any candidate list.


rule similar:
    input:
        embeddings=per_shard(paths.EMBEDDINGS) if config["infer"]["embeddings"] else [],
        catalog=paths.CATALOG,
        grades=config["similar"]["grades"],
    output:
        **plan.similar_outputs(config),
    params:
        **cfg_params("tasks", "models", "training_set", "infer", "similar"),
        outputs=lambda wildcards, output: plan.similar_args(dict(output.items())),
    conda:
        ENV
    log:
        "logs/similar/{task}.log",
    benchmark:
        "results/benchmarks/similar/{task}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m skysift similar --config-json {params.cfg:q} --task {wildcards.task} "
        "--embeddings {input.embeddings:q} --catalog {input.catalog:q} "
        "--out {output.list:q} {params.outputs} --threads {threads} 2> {log:q}"


rule similar_review:
    input:
        candidates=paths.SIMILAR,
        cutouts=per_shard(paths.CUTOUTS),
    output:
        html=paths.SIMILAR_HTML,
        sheet=paths.SIMILAR_SHEET,
    params:
        **cfg_params("tasks", "models", "review", "training_set"),
    conda:
        ENV
    log:
        "logs/similar_review/{task}.log",
    benchmark:
        "results/benchmarks/similar_review/{task}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m skysift review --config-json {params.cfg:q} --task {wildcards.task} "
        "--candidates {input.candidates:q} --cutouts {input.cutouts:q} "
        "--html {output.html:q} --sheet {output.sheet:q} 2> {log:q}"
