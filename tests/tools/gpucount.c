/* gpucount — prints the number of usable CUDA devices, then, when there is
 * none, why ("0 no CUDA driver"). For tests that need a GPU (tests/bats/
 * gpu.bats, tests/gpu/run.sh): they skip with that reason. With
 * --versions, a second line: the driver, runtime, cuDNN, cuBLAS and NCCL
 * versions this process loaded (mfr_gpu_versions). */
#include <stdio.h>
#include <string.h>

#include "gpu.h" /* defines: mfr_gpu_count, mfr_gpu_versions */

int main(int argc, char **argv)
{
	char why[128], v[256];
	int n = mfr_gpu_count(why, sizeof why);
	if (n > 0)
		printf("%d\n", n);
	else
		printf("0 %s\n", why);
	if (argc > 1 && !strcmp(argv[1], "--versions")) {
		mfr_gpu_versions(v, sizeof v);
		printf("%s\n", v);
	}
	return 0;
}
