// The baseline of bench/cgroups.sh: a plain reader of the files `plimsoll watch --containers`
// reads for each cgroup (opened, read and closed every tick, memory.stat scanned for its four
// figures), nothing else: no walk, no store, no HTTP. Usage: cgroup_reader v1|v2 SECONDS DIRS_FILE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char buf[16384];

static long long read_file(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = 0;
    return n;
}

static unsigned long long stat_sum(const char *const keys[4]) {
    unsigned long long sum = 0;
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        for (int k = 0; k < 4; k++) {
            size_t len = strlen(keys[k]);
            if (strncmp(line, keys[k], len) == 0 && line[len] == ' ') sum += strtoull(line + len + 1, NULL, 10);
        }
    }
    return sum;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: cgroup_reader v1|v2 SECONDS DIRS_FILE\n"); return 2; }
    int v2 = strcmp(argv[1], "v2") == 0;
    int seconds = atoi(argv[2]);
    FILE *list = fopen(argv[3], "r");
    if (!list) { perror(argv[3]); return 2; }
    char **dirs = NULL; size_t count = 0; char line[4096];
    while (fgets(line, sizeof line, list)) {
        line[strcspn(line, "\n")] = 0;
        dirs = realloc(dirs, (count + 1) * sizeof *dirs);
        dirs[count++] = strdup(line);
    }
    fclose(list);
    const char *const v1_keys[4] = {"total_rss", "total_cache", "total_shmem", "total_inactive_file"};
    const char *const v2_keys[4] = {"anon", "file", "shmem", "inactive_file"};
    const char *const v1_files[] = {"memory.usage_in_bytes", "memory.oom_control", NULL};
    const char *const v2_files[] = {"memory.current", "memory.max", "memory.events", "memory.pressure", NULL};
    unsigned long long checksum = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (int tick = 0; tick < seconds; tick++) {
        for (size_t i = 0; i < count; i++) {
            for (const char *const *f = v2 ? v2_files : v1_files; *f; f++) checksum += read_file(dirs[i], *f) > 0;
            if (read_file(dirs[i], "memory.stat") > 0) checksum += stat_sum(v2 ? v2_keys : v1_keys);
        }
        next.tv_sec += 1;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    printf("%llu\n", checksum);
    return 0;
}
