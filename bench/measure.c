/* measure RESULT PROGRAM [ARG...]: run PROGRAM as this small process's child
 * (same environment, stdio and cwd) and write to the file RESULT
 *     <wall ns> <user us> <sys us> <peak RSS KiB> <wait status>
 * Wall time is from fork to wait4; CPU time and peak RSS are wait4's rusage
 * (the child's, and its waited-for descendants').  Measured from bench/run.py
 * directly, a child's ru_maxrss would include the pages it shared with the
 * big Python parent before exec; from here those are this program's few. */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec start, end;
    struct rusage usage;
    int status;
    pid_t pid;
    FILE *out;

    if (argc < 3) {
        fputs("usage: measure RESULT PROGRAM [ARG...]\n", stderr);
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        execv(argv[2], argv + 2);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &usage) != pid)
        return 2;
    clock_gettime(CLOCK_MONOTONIC, &end);
    out = fopen(argv[1], "w");
    if (!out)
        return 2;
    fprintf(out, "%lld %lld %lld %ld %d\n",
            (long long)(end.tv_sec - start.tv_sec) * 1000000000LL
                + (end.tv_nsec - start.tv_nsec),
            (long long)usage.ru_utime.tv_sec * 1000000LL + usage.ru_utime.tv_usec,
            (long long)usage.ru_stime.tv_sec * 1000000LL + usage.ru_stime.tv_usec,
            usage.ru_maxrss, status);
    return fclose(out) == 0 ? 0 : 2;
}
