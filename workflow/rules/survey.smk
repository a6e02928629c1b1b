# Check, then the survey index checkpoint (footprints, object -> tile, rejects, shards); split.
# check writes the header summary the index reads instead of every header again; the index
# also keeps results/index/shards/{shard}.fits (not declared: Snakemake would delete them
# before the index runs) so that shards whose tiles and objects are unchanged stay as they are.


rule check:
    input:
        tiles=plan.survey_files(config),
        catalog=config["survey"]["catalog"],
        labels=plan.labels_files(config),
        known_lenses=plan.known_lenses_files(config),
    output:
        report=paths.CHECK,
        headers=paths.TILE_HEADERS,
    params:
        **cfg_params("survey", "tasks", "index", "strict"),
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
        "python -m skysift check --config-json {params.cfg:q} --report {output.report:q} "
        "--headers {output.headers:q} 2> {log:q}"


checkpoint survey_index:
    input:
        check=paths.CHECK,
        headers=paths.TILE_HEADERS,
        catalog=config["survey"]["catalog"],
    output:
        tiles=paths.INDEX_TILES,
        assignment=paths.INDEX_ASSIGNMENT,
        rejects=paths.INDEX_REJECTS,
        shards=paths.INDEX_SHARDS,
    params:
        **cfg_params("survey", "index", "strict"),
        index_dir=lambda wildcards, output: Path(output.shards).parent,
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
        "python -m skysift index --config-json {params.cfg:q} --out-dir {params.index_dir:q} "
        "--headers {input.headers:q} 2> {log:q}"


rule split:
    input:
        catalog=config["survey"]["catalog"],
    output:
        paths.SPLIT,
    params:
        **cfg_params("survey", "split"),
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
        "python -m skysift split --config-json {params.cfg:q} --out {output:q} 2> {log:q}"
