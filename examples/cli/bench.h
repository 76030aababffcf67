/* bench.h - the `falconmamba bench` command (bench.c). */
#ifndef FM_CLI_BENCH_H
#define FM_CLI_BENCH_H

/* argv[1] is "bench"; returns the process exit code. */
int falconmamba_bench(int argc, char **argv);

#endif
