/* test_model.c — the .mfrm container: save/load bit-exact, fp16 storage,
 * optional sections, and every way a model file can be damaged (truncation
 * at every length, a flipped bit in every byte) giving an error, never a
 * crash or a silently different model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "model.h"

static void build(mfr_model *m)
{
	mfr_error e;
	memset(m, 0, sizeof *m);
	m->arch = strdup("mfr-arch 1\ninput x 3 112 112\n# a comment\noutput x\n");
	mfr_input_spec_insightface(&m->input);
	int64_t d1[4] = {8, 3, 3, 3}, d2[1] = {8}, d3[2] = {5, 7};
	CHECK(mfr_model_add(m, "conv1.weight", MFR_TDTYPE_F32, 4, d1, &e) != NULL);
	CHECK(mfr_model_add(m, "bn1.running_var", MFR_TDTYPE_F32, 1, d2, &e) != NULL);
	CHECK(mfr_model_add(m, "fc.weight", MFR_TDTYPE_F16, 2, d3, &e) != NULL);
	CHECK(mfr_model_add(m, "step", MFR_TDTYPE_F32, 0, NULL, &e) != NULL);
	/* the table may have moved: look the tensors up again */
	mfr_tensor *a = mfr_model_find(m, "conv1.weight"), *b = mfr_model_find(m, "bn1.running_var");
	mfr_tensor *c = mfr_model_find(m, "fc.weight"), *s = mfr_model_find(m, "step");
	mfr_rng r = {3};
	for (size_t i = 0; i < a->numel; i++)
		a->data[i] = (float)mfr_rng_normal(&r);
	for (size_t i = 0; i < b->numel; i++)
		b->data[i] = 1.0f + (float)i;
	for (size_t i = 0; i < c->numel; i++) /* values fp16 holds exactly, so the round trip is exact */
		c->data[i] = (float)((int)i - 17) / 8.0f;
	s->data[0] = 1234.0f;
	uint8_t opt[5] = {1, 2, 3, 4, 5};
	CHECK(mfr_model_add_section(m, 0x8001, opt, 5, &e) == 0);
}

static int same(const mfr_model *a, const mfr_model *b)
{
	if (strcmp(a->arch, b->arch) || a->ntensors != b->ntensors || a->nextra != b->nextra ||
	    memcmp(&a->input, &b->input, sizeof a->input))
		return 0;
	for (int i = 0; i < a->ntensors; i++) {
		const mfr_tensor *x = &a->tensors[i], *y = &b->tensors[i];
		if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim || x->numel != y->numel ||
		    memcmp(x->dims, y->dims, sizeof x->dims) || memcmp(x->data, y->data, x->numel * sizeof(float)))
			return 0;
	}
	for (int i = 0; i < a->nextra; i++)
		if (a->extra[i].type != b->extra[i].type || a->extra[i].size != b->extra[i].size ||
		    memcmp(a->extra[i].data, b->extra[i].data, a->extra[i].size))
			return 0;
	return 1;
}

int main(void)
{
	mfr_model m, l;
	mfr_error e;
	build(&m);
	char path[] = "/tmp/mfr-test-model-XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	CHECK(mfr_model_save(path, &m, &e) == 0);
	CHECK(mfr_model_load(path, &l, &e) == 0);
	CHECK(same(&m, &l));
	CHECK(mfr_model_find(&l, "fc.weight") && mfr_model_find(&l, "fc.weight")->dtype == MFR_TDTYPE_F16);
	CHECK(mfr_model_find(&l, "nope") == NULL);
	/* save -> load -> encode is byte-identical */
	uint8_t *b1 = NULL, *b2 = NULL;
	size_t n1 = 0, n2 = 1;
	CHECK(mfr_model_encode(&m, &b1, &n1, &e) == 0 && mfr_model_encode(&l, &b2, &n2, &e) == 0);
	CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
	CHECK(n1 % 64 == 0);
	mfr_model_free(&l);

	/* bad additions */
	int64_t d[2] = {2, 0};
	CHECK(mfr_model_add(&m, "conv1.weight", MFR_TDTYPE_F32, 1, d, &e) == NULL && strstr(e.msg, "duplicate"));
	CHECK(mfr_model_add(&m, "z", MFR_TDTYPE_F32, 2, d, &e) == NULL && strstr(e.msg, "dimension"));
	CHECK(mfr_model_add(&m, "a\tb", MFR_TDTYPE_F32, 1, d, &e) == NULL && strstr(e.msg, "control"));
	CHECK(mfr_model_add(&m, "y", 9, 1, d, &e) == NULL);
	CHECK(mfr_model_add_section(&m, 0x8001, "x", 1, &e) == -1 && strstr(e.msg, "duplicate"));
	CHECK(mfr_model_add_section(&m, 7, "x", 1, &e) == -1);

	/* every truncation fails, naming the model */
	int trunc_ok = 1;
	for (size_t k = 0; k < n1; k++) {
		int rc = mfr_model_decode(b1, k, "t.mfrm", &l, &e);
		trunc_ok &= rc == -1 && strstr(e.msg, "t.mfrm") != NULL && l.ntensors == 0 && l.arch == NULL;
	}
	CHECK(trunc_ok);
	/* every flipped bit fails: checksums cover header, table and sections,
	 * and the alignment padding must be zero */
	int flip_ok = 1;
	for (size_t k = 0; k < n1; k++) {
		b1[k] ^= 0x10;
		int rc = mfr_model_decode(b1, n1, "f.mfrm", &l, &e);
		if (rc == 0) {
			fprintf(stderr, "flip at byte %zu not detected\n", k);
			mfr_model_free(&l);
		}
		flip_ok &= rc == -1 && strstr(e.msg, "f.mfrm") != NULL;
		b1[k] ^= 0x10;
	}
	CHECK(flip_ok);
	/* trailing bytes */
	uint8_t *longer = malloc(n1 + 1);
	memcpy(longer, b1, n1);
	longer[n1] = 0;
	CHECK(mfr_model_decode(longer, n1 + 1, "x", &l, &e) == -1 && strstr(e.msg, "trailing"));
	free(longer);
	/* not a model */
	CHECK(mfr_model_decode((const uint8_t *)"hello world, this is text only ....", 34, "x", &l, &e) == -1 &&
	      strstr(e.msg, "not an mfr model"));
	CHECK(mfr_model_load("/nonexistent/m.mfrm", &l, &e) == -1 && strstr(e.msg, "m.mfrm"));
	free(b1);
	free(b2);
	mfr_model_free(&m);
	remove(path);
	return check_done();
}
