# Candidate review: each task's ranked candidates as an HTML gallery of colour composites
# (registered for `snakemake --report`) and a grading sheet (skysift grades); beside the
# candidates, a random sample in bins of score and known lenses as checks, drawn from the
# catalog, with each page object's source and weight in {task}_sample.csv; the pages' stamps
# from results/review/stamps.h5 (rule review_stamps, below).


rule review:
    input:
        candidates=paths.CANDIDATES,
        catalog=plan.catalog_path(config),
        stamps=paths.REVIEW_STAMPS,
        metrics=paths.METRICS,
        split=paths.SPLIT,
        labels=plan.labels_files(config),
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
        **cfg_params("tasks", "models", "review", "training_set", "survey"),
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
        "--candidates {input.candidates:q} --stamps {input.stamps:q} "
        "--html {output.html:q} --sheet {output.sheet:q} --metrics {input.metrics:q} "
        "--catalog {input.catalog:q} --sample {output.sample:q} --split {input.split:q} 2> {log:q}"


# The stamps every task's page shows (candidates, random sample, checks: drawn as rule review
# draws them), cut again from the tiles after ranking into one small file: no shard needs
# results/cutouts/ for the gallery (docs/scale.md).
rule review_stamps:
    input:
        candidates=expand(paths.CANDIDATES, task=TASKS),
        catalog=plan.catalog_path(config),
        shards=paths.INDEX_SHARDS,
        split=paths.SPLIT,
        labels=plan.labels_files(config),
    output:
        paths.REVIEW_STAMPS,
    params:
        **cfg_params("tasks", "models", "review", "training_set", "infer", "survey", "cutouts",
                     "strict"),
        index_dir=lambda wildcards, input: Path(input.shards).parent,
    conda:
        ENV
    log:
        "logs/review_stamps.log",
    benchmark:
        "results/benchmarks/review_stamps.tsv"
    threads: 2  # the decode pool (infer.tiles_in_flight processes) works while this one waits
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m skysift review_stamps --config-json {params.cfg:q} "
        "--index-dir {params.index_dir:q} --candidates {input.candidates:q} "
        "--catalog {input.catalog:q} --split {input.split:q} --out {output:q} 2> {log:q}"


# More like this (config similar; docs/review.md): the nearest neighbours of query objects in
# the embeddings (infer.embeddings), a linear probe and a 2-D map; rule all asks for them
# only when similar.queries or similar.grades is given. The neighbour list is shown and
# graded by the review step like any candidate list.


rule similar:
    input:
        embeddings=per_shard(paths.EMBEDDINGS) if config["infer"]["embeddings"] else [],
        catalog=plan.catalog_path(config),
        grades=config["similar"]["grades"],
    output:
        **similar_output(),
    params:
        **cfg_params("tasks", "models", "training_set", "infer", "similar"),
        outputs=lambda wildcards, output: plan.optional_flags(dict(output.items()), "probe", "map"),
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


rule similar_stamps:
    input:
        candidates=paths.SIMILAR,
        shards=paths.INDEX_SHARDS,
    output:
        paths.SIMILAR_STAMPS,
    params:
        **cfg_params("tasks", "models", "review", "training_set", "infer", "survey", "cutouts",
                     "strict"),
        index_dir=lambda wildcards, input: Path(input.shards).parent,
    conda:
        ENV
    log:
        "logs/similar_stamps/{task}.log",
    benchmark:
        "results/benchmarks/similar_stamps/{task}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m skysift review_stamps --config-json {params.cfg:q} --listed "
        "--index-dir {params.index_dir:q} --candidates {input.candidates:q} "
        "--out {output:q} 2> {log:q}"


rule similar_review:
    input:
        candidates=paths.SIMILAR,
        stamps=paths.SIMILAR_STAMPS,
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
        "--candidates {input.candidates:q} --stamps {input.stamps:q} "
        "--html {output.html:q} --sheet {output.sheet:q} 2> {log:q}"
