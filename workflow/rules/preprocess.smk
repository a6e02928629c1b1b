# Dask-parallel normalisation into chunked HDF5.


rule preprocess:
    input:
        "results/cutouts/{tile}.h5",
    output:
        "results/stamps/{tile}.h5",
    params:
        cfg=cfg("preprocess"),
    conda:
        ENV
    log:
        "logs/preprocess/{tile}.log",
    benchmark:
        "results/benchmarks/preprocess/{tile}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "{PY}.preprocess --config-json {params.cfg:q} --in {input:q} --out {output:q} "
        "--threads {threads} 2> {log:q}"
