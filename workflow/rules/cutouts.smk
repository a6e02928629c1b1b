# Multi-band stamps at catalog positions, one HDF5 per tile.


rule cutouts:
    input:
        tiles=tile_files,
        assignment="results/index/assignment.fits",
    output:
        "results/cutouts/{tile}.h5",
    params:
        cfg=cfg("survey", "cutouts", "preprocess"),
    conda:
        ENV
    log:
        "logs/cutouts/{tile}.log",
    benchmark:
        "results/benchmarks/cutouts/{tile}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "{PY}.cutouts --config-json {params.cfg:q} --tile {wildcards.tile} "
        "--assignment {input.assignment:q} --out {output:q} 2> {log:q}"
