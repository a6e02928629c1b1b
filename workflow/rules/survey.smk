# Survey index: footprints, object -> tile assignment, rejects; and the id-hash split.


rule survey_index:
    input:
        tiles=all_tile_files,
        catalog=config["survey"]["catalog"],
    output:
        tiles="results/index/tiles.json",
        assignment="results/index/assignment.fits",
        rejects="results/index/rejects.ecsv",
    params:
        cfg=cfg("survey"),
    conda:
        ENV
    log:
        "logs/survey_index.log",
    benchmark:
        "results/benchmarks/survey_index.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "{PY}.survey --config-json {params.cfg:q} --out-dir results/index 2> {log:q}"


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
