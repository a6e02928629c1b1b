# Check, then the survey index checkpoint (footprints, object -> tile, rejects, shards); split.
# check writes the header summary the index reads instead of every header again; the index
# also keeps results/index/shards/{shard}.fits (not declared: Snakemake would delete them
# before the index runs) so that shards whose tiles and objects are unchanged stay as they are.


rule check:
    input:
        tiles=SURVEY_FILES,
        catalog=config["survey"]["catalog"],
        labels=labels_file(),
        known_lenses=known_lenses_file(),
    output:
        report="results/check.json",
        headers="results/tile_headers.json",
    params:
        cfg=cfg("survey", "tasks", "index", "strict"),
    conda:
        ENV
    log:
        "logs/check.log",
    benchmark:
        "results/benchmarks/check.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "{PY}.check --config-json {params.cfg:q} --report {output.report:q} "
        "--headers {output.headers:q} 2> {log:q}"


checkpoint survey_index:
    input:
        check="results/check.json",
        headers="results/tile_headers.json",
        catalog=config["survey"]["catalog"],
    output:
        tiles="results/index/tiles.json",
        assignment="results/index/assignment.fits",
        rejects="results/index/rejects.ecsv",
        shards="results/index/shards.json",
    params:
        cfg=cfg("survey", "index", "strict"),
    conda:
        ENV
    log:
        "logs/survey_index.log",
    benchmark:
        "results/benchmarks/survey_index.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "{PY}.index --config-json {params.cfg:q} --out-dir results/index "
        "--headers {input.headers:q} 2> {log:q}"


rule split:
    input:
        catalog=config["survey"]["catalog"],
    output:
        "results/split.fits",
    params:
        cfg=cfg("survey", "split"),
    conda:
        ENV
    log:
        "logs/split.log",
    benchmark:
        "results/benchmarks/split.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{PY}.split --config-json {params.cfg:q} --out {output:q} 2> {log:q}"
