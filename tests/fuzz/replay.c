/* replay.c — runs a fuzz target over a corpus without libFuzzer, so `make test`
 * (gcc) and `make check-asan` replay every saved input. Arguments are files or
 * folders (every regular file inside). A crash or sanitizer report fails the
 * run; otherwise it prints "N passed, 0 failed". */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: '%s': cannot open\n", path);
		return -1;
	}
	size_t room = 1 << 16, n = 0;
	uint8_t *buf = malloc(room);
	for (;;) {
		if (n == room)
			buf = realloc(buf, room *= 2);
		size_t got = fread(buf + n, 1, room - n, f);
		if (!got)
			break;
		n += got;
	}
	fclose(f);
	/* an exact-size copy, so ASan sees reads one past the end */
	uint8_t *exact = malloc(n ? n : 1);
	memcpy(exact, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
	int ran = 0, bad = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: '%s': no such file or folder\n", argv[i]);
			bad++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			bad += run_file(argv[i]) != 0;
			ran++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		char **names = NULL;
		size_t nn = 0;
		for (struct dirent *de; d && (de = readdir(d));) {
			if (de->d_name[0] == '.')
				continue;
			names = realloc(names, (nn + 1) * sizeof *names);
			size_t len = strlen(argv[i]) + strlen(de->d_name) + 2;
			names[nn] = malloc(len);
			snprintf(names[nn++], len, "%s/%s", argv[i], de->d_name);
		}
		if (d)
			closedir(d);
		qsort(names, nn, sizeof *names, cmp);
		for (size_t k = 0; k < nn; k++) {
			bad += run_file(names[k]) != 0;
			ran++;
			free(names[k]);
		}
		free(names);
	}
	printf("%d passed, %d failed\n", ran - bad, bad);
	return bad != 0;
}
