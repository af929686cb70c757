/* gpucount — prints the number of usable CUDA devices, then, when there is
 * none, why ("0 no CUDA driver"). For tests that need a GPU (tests/bats/
 * gpu.bats, tests/gpu/run.sh): they skip with that reason. */
#include <stdio.h>

#include "gpu.h" /* defines: mfr_gpu_count */

int main(void)
{
	char why[128];
	int n = mfr_gpu_count(why, sizeof why);
	if (n > 0)
		printf("%d\n", n);
	else
		printf("0 %s\n", why);
	return 0;
}
