/* test_arch.c — the .arch format: presets round-trip through the canonical
 * writer, the iresnet MAC totals match insightface's published figures, the
 * iresnet50 parameter count matches a hand computation, small graphs are
 * checked by hand (shapes, tensors, parameters, MACs), every error class is
 * reported with its line, and every prefix of a preset parses or fails
 * cleanly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "check.h"

static mfr_arch *parse_str(const char *s, mfr_error *e) { return mfr_arch_parse(s, strlen(s), "t.arch", e); }

static void test_presets_round_trip(void)
{
	const char *const *names = mfr_arch_preset_names();
	for (int i = 0; names[i]; i++) {
		mfr_error e;
		char *text = mfr_arch_preset(names[i], &e);
		CHECK(text != NULL);
		if (!text)
			continue;
		mfr_arch *a = mfr_arch_parse(text, strlen(text), names[i], &e);
		if (!a)
			fprintf(stderr, "    %s\n", e.msg);
		CHECK(a != NULL);
		if (!a) {
			free(text);
			continue;
		}
		size_t n1, n2;
		char *c1 = mfr_arch_format(a, &n1, &e);
		mfr_arch *b = c1 ? mfr_arch_parse(c1, n1, "canonical", &e) : NULL;
		char *c2 = b ? mfr_arch_format(b, &n2, &e) : NULL;
		CHECK(c2 != NULL && n1 == n2 && !memcmp(c1, c2, n1));
		if (b) {
			CHECK_EQ_INT(b->n_layers, a->n_layers);
			CHECK_EQ_INT(b->n_tensors, a->n_tensors);
			CHECK_EQ_INT(b->params, a->params);
			CHECK_EQ_INT(b->macs, a->macs);
			int same = 1;
			for (int k = 0; k < a->n_tensors; k++)
				same &= !strcmp(a->tensors[k].name, b->tensors[k].name) &&
					a->tensors[k].count == b->tensors[k].count;
			for (int k = 0; k < a->n_layers; k++)
				same &= a->layers[k].shape.c == b->layers[k].shape.c &&
					a->layers[k].shape.h == b->layers[k].shape.h &&
					a->layers[k].shape.w == b->layers[k].shape.w && a->layers[k].op == b->layers[k].op;
			CHECK(same);
			/* every preset ends in a 512-d embedding */
			const mfr_layer *o = &b->layers[b->outputs[0]];
			CHECK(b->n_outputs == 1 && o->shape.vec && o->shape.c == 512 && o->op == MFR_OP_BN1D);
		}
		/* the last map before the head is 7x7 */
		int bn2 = mfr_arch_find(a, "bn2");
		CHECK(bn2 > 0 && a->layers[bn2].shape.h == 7 && a->layers[bn2].shape.w == 7);
		char m[16];
		printf("preset %-12s %10llu params %6s MACs (%llu), %d layers, %zu bytes of text\n", names[i],
		       (unsigned long long)a->params, mfr_arch_eng(m, a->macs), (unsigned long long)a->macs,
		       a->n_layers, strlen(text));
		mfr_arch_free(a);
		mfr_arch_free(b);
		free(c1);
		free(c2);
		free(text);
	}
}

static mfr_arch *preset(const char *name)
{
	mfr_error e;
	mfr_arch *a = mfr_arch_load(name, &e);
	if (!a)
		fprintf(stderr, "    %s\n", e.msg);
	return a;
}

/* insightface's published GMACs (arcface_torch): r18 2.6, r50 6.3, r100 12.1, r200 23.5 */
static void test_iresnet_macs(void)
{
	static const struct {
		const char *name;
		double g;
		const char *eng;
	} want[] = {{"r18", 2.6, "2.62G"}, {"r50", 6.3, "6.32G"}, {"r100", 12.1, "12.1G"}, {"r200", 23.5, "23.5G"},
		    {"iresnet50", 6.3, "6.32G"}};
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		mfr_arch *a = preset(want[i].name);
		CHECK(a != NULL);
		if (!a)
			continue;
		CHECK_NEAR((double)a->macs / 1e9, want[i].g, 0.1);
		char m[16];
		CHECK(!strcmp(mfr_arch_eng(m, a->macs), want[i].eng));
		mfr_arch_free(a);
	}
}

/* iresnet50 parameters by hand, per IBasicBlock (inplanes i, planes c):
 * first block of a stage: bn1 2i + conv1 9ic + bn2 2c + prelu c + conv2 9c^2 +
 * bn3 2c + downsample ic + 2c = 2i + 10ic + 9c^2 + 7c; the others 18c^2 + 7c.
 * Stem 64*27 + 128 + 64; head bn2 1024 + fc 25088*512 + 512 + features 1024.
 * Running statistics are buffers, not parameters (as PyTorch's parameters()). */
static unsigned long long iresnet_params(const int layers[4])
{
	unsigned long long p = 64 * 27 + 128 + 64, i = 64;
	for (int s = 0; s < 4; s++) {
		unsigned long long c = 64ull << s;
		p += 2 * i + 10 * i * c + 9 * c * c + 7 * c;
		p += (unsigned long long)(layers[s] - 1) * (18 * c * c + 7 * c);
		i = c;
	}
	return p + 1024 + 25088ull * 512 + 512 + 1024;
}

static void test_iresnet_params(void)
{
	static const int l50[4] = {3, 4, 14, 3}, l18[4] = {2, 2, 2, 2}, l100[4] = {3, 13, 30, 3};
	CHECK_EQ_INT(iresnet_params(l50), 43590848);
	mfr_arch *a = preset("r50");
	if (a) {
		CHECK_EQ_INT(a->params, iresnet_params(l50));
		CHECK_NEAR((double)a->params / 1e6, 43.6, 0.05); /* insightface: 43.6M */
		int t = -1;
		for (int k = 0; k < a->n_tensors; k++)
			if (!strcmp(a->tensors[k].name, "layer3.13.conv2.weight"))
				t = k;
		CHECK(t >= 0 && a->tensors[t].ndim == 4 && a->tensors[t].dims[0] == 256 &&
		      a->tensors[t].dims[1] == 256 && a->tensors[t].dims[2] == 3);
		int f = mfr_arch_find(a, "features");
		CHECK(f > 0 && a->tensors[a->layers[f].first_tensor].frozen);
		/* the describer's last line */
		FILE *tf = tmpfile();
		mfr_error e;
		CHECK(tf && mfr_arch_describe(a, tf, &e) == 0);
		if (tf) {
			rewind(tf);
			char line[256], last[256] = "";
			while (fgets(line, sizeof line, tf))
				strcpy(last, line);
			CHECK(!strcmp(last, "total: 43590848 params, 6.32G MACs\n"));
			fclose(tf);
		}
		mfr_arch_free(a);
	}
	a = preset("r18");
	CHECK(a && a->params == iresnet_params(l18));
	mfr_arch_free(a);
	a = preset("r100");
	CHECK(a && a->params == iresnet_params(l100));
	mfr_arch_free(a);
}

static const mfr_layer *layer(const mfr_arch *a, const char *name)
{
	int i = mfr_arch_find(a, name);
	return i < 0 ? NULL : &a->layers[i];
}

#define CHECK_LAYER(a, name, C, H, W, P, M) do { const mfr_layer *l_ = layer(a, name); CHECK(l_ != NULL); \
	if (l_) { CHECK_EQ_INT(l_->shape.c, C); CHECK_EQ_INT(l_->shape.h, H); CHECK_EQ_INT(l_->shape.w, W); \
		CHECK_EQ_INT(l_->params, P); CHECK_EQ_INT(l_->macs, M); } } while (0)

static int has_tensor(const mfr_arch *a, const char *name, int ndim, int d0, int d1, int buffer)
{
	for (int k = 0; k < a->n_tensors; k++)
		if (!strcmp(a->tensors[k].name, name))
			return a->tensors[k].ndim == ndim && a->tensors[k].dims[0] == d0 &&
			       (ndim < 2 || a->tensors[k].dims[1] == d1) && a->tensors[k].buffer == buffer;
	return 0;
}

static void test_small_graphs(void)
{
	mfr_error e;
	const char *g1 =
		"mfr-arch 1\n"
		"# a comment line\n"
		"\n"
		"input x 3 8 8\n"
		"conv c x out=4 k=3 s=2 p=1 bias=1   # 4x4x4: 4*3*9+4 params, 64*27 MACs\n"
		"bn b c\n"
		"prelu a b\n"
		"maxpool m a k=2\n"
		"avgpool v a k=3 s=1 p=1\n"
		"conv d a out=4 k=1x3 p=0x1 g=2\n"
		"add s v d\n"
		"concat cc s a\n"
		"gap g cc\n"
		"flatten f g\n"
		"linear fc f out=3\n"
		"l2norm n fc\n"
		"output n\n";
	mfr_arch *a = parse_str(g1, &e);
	if (!a)
		fprintf(stderr, "    %s\n", e.msg);
	CHECK(a != NULL);
	if (a) {
		CHECK_LAYER(a, "x", 3, 8, 8, 0, 0);
		CHECK_LAYER(a, "c", 4, 4, 4, 4 * 3 * 9 + 4, 64 * 27);
		CHECK_LAYER(a, "b", 4, 4, 4, 8, 64);
		CHECK_LAYER(a, "a", 4, 4, 4, 4, 64);
		CHECK_LAYER(a, "m", 4, 2, 2, 0, 0);
		CHECK_LAYER(a, "v", 4, 4, 4, 0, 64 * 9);
		CHECK_LAYER(a, "d", 4, 4, 4, 4 * 2 * 3, 64 * 2 * 3);
		CHECK_LAYER(a, "s", 4, 4, 4, 0, 0);
		CHECK_LAYER(a, "cc", 8, 4, 4, 0, 0);
		CHECK_LAYER(a, "g", 8, 1, 1, 0, 128);
		CHECK_LAYER(a, "f", 8, 1, 1, 0, 0);
		CHECK_LAYER(a, "fc", 3, 1, 1, 27, 24);
		CHECK_LAYER(a, "n", 3, 1, 1, 0, 6);
		CHECK(layer(a, "f")->shape.vec && !layer(a, "g")->shape.vec);
		CHECK(layer(a, "m")->sh == 2 && layer(a, "m")->sw == 2);
		CHECK(layer(a, "c")->line == 5);
		CHECK(has_tensor(a, "c.weight", 4, 4, 3, 0) && has_tensor(a, "c.bias", 1, 4, 0, 0));
		CHECK(has_tensor(a, "d.weight", 4, 4, 2, 0) && !has_tensor(a, "d.bias", 1, 4, 0, 0));
		CHECK(has_tensor(a, "b.running_var", 1, 4, 0, 1) && has_tensor(a, "fc.weight", 2, 3, 8, 0));
		CHECK_EQ_INT(a->params, 112 + 8 + 4 + 24 + 27);
		CHECK_EQ_INT(a->macs, 1728 + 64 + 64 + 576 + 384 + 128 + 24 + 6);
		mfr_arch_free(a);
	}
	const char *g2 =
		"mfr-arch 1\n"
		"input x 8 6 5\n"
		"pad p x t=1 b=0 l=2 r=1\n"
		"chpad q p out=12\n"
		"se s q r=4\n"
		"conv c s out=8 k=3 s=2x1 p=1\n"
		"splat sp c radix=2 inter=5\n"
		"relu r sp\n"
		"sigmoid g r\n"
		"dropout d g p=0.4\n"
		"flatten f d\n"
		"bn1d b f eps=0.001 momentum=0.01 fixgamma=1\n"
		"linear l b out=2 bias=0\n"
		"output l\n"
		"output sp\n";
	a = parse_str(g2, &e);
	if (!a)
		fprintf(stderr, "    %s\n", e.msg);
	CHECK(a != NULL);
	if (a) {
		CHECK_LAYER(a, "p", 8, 7, 8, 0, 0);
		CHECK_LAYER(a, "q", 12, 7, 8, 0, 0);
		/* se: mid 3; fc1 3x12+3, fc2 12x3+12; MACs gap 672 + scale 672 + 2*36 */
		CHECK_LAYER(a, "s", 12, 7, 8, 87, 1416);
		CHECK_LAYER(a, "c", 8, 4, 8, 8 * 12 * 9, 8 * 32 * 12 * 9);
		/* splat: C 4, inter 5; fc1 20+5, bn 10 (+10 buffers), fc2 40+8;
		 * MACs gap 128 + fc1 20 + bn 5 + fc2 40 + weighted sum 256 */
		CHECK_LAYER(a, "sp", 4, 4, 8, 83, 449);
		CHECK_LAYER(a, "f", 128, 1, 1, 0, 0);
		CHECK_LAYER(a, "b", 128, 1, 1, 256, 128);
		CHECK_LAYER(a, "l", 2, 1, 1, 256, 256);
		CHECK(has_tensor(a, "sp.bn_running_mean", 1, 5, 0, 1) && has_tensor(a, "sp.fc2_weight", 2, 8, 5, 0));
		CHECK(has_tensor(a, "s.fc1_weight", 2, 3, 12, 0));
		CHECK_EQ_INT(a->n_outputs, 2);
		CHECK_NEAR(layer(a, "d")->p, 0.4, 0);
		CHECK_NEAR(layer(a, "b")->eps, 0.001, 0);
		/* canonical text spells every attribute out */
		char *c = mfr_arch_format(a, NULL, &e);
		CHECK(c && strstr(c, "\nconv c s out=8 k=3 s=2x1 p=1 g=1 bias=0\n") &&
		      strstr(c, "\nbn1d b f eps=0.001 momentum=0.01 fixgamma=1\n") &&
		      strstr(c, "\nsplat sp c radix=2 inter=5\n") && strstr(c, "output l\noutput sp\n"));
		free(c);
		mfr_arch_free(a);
	}
	/* splat's inter defaults to max(C*radix/4, 32), C = 512/radix */
	a = parse_str("mfr-arch 1\ninput x 512 4 4\nsplat s x radix=4\noutput s\n", &e);
	CHECK(a && layer(a, "s")->inter == 128 && layer(a, "s")->shape.c == 128);
	mfr_arch_free(a);
	/* CR-LF text and a comment after the version */
	a = parse_str("mfr-arch 1 # v\r\ninput x 1 2 2\r\nrelu r x\r\noutput r", &e);
	CHECK(a != NULL);
	mfr_arch_free(a);
}

static void expect_error(const char *text, const char *want, int line)
{
	mfr_error e;
	mfr_arch *a = parse_str(text, &e);
	CHECK(a == NULL);
	mfr_arch_free(a);
	if (a)
		return;
	int ok = strstr(e.msg, want) != NULL;
	if (line > 0) {
		char l[32];
		snprintf(l, sizeof l, "'t.arch': line %d: ", line);
		ok &= !strncmp(e.msg, l, strlen(l));
	}
	if (!check_report(ok, want, __FILE__, __LINE__))
		fprintf(stderr, "    got \"%s\"\n", e.msg);
}

#define HDR "mfr-arch 1\ninput x 3 16 16\n"
static void test_errors(void)
{
	mfr_error e;
	const char *r50 = HDR "conv c1 x out=8 k=3\nconv c3 c1 out=8 k=3 strid=2\noutput c3\n";
	mfr_arch *a = mfr_arch_parse(r50, strlen(r50), "r50.arch", &e);
	CHECK(!a && !strcmp(e.msg, "'r50.arch': line 4: conv 'c3': unknown attribute 'strid'"));
	expect_error(HDR "cnv c x out=8 k=3\noutput c\n", "unknown op 'cnv'", 3);
	expect_error(HDR "conv c x out=8 k=3 strid=2\noutput c\n", "conv 'c': unknown attribute 'strid'", 3);
	expect_error(HDR "relu r x\nrelu r x\noutput r\n", "relu 'r': name already defined on line 3", 4);
	expect_error(HDR "relu x x\noutput x\n", "relu 'x': name already defined on line 2", 3);
	expect_error(HDR "relu r y\noutput r\n", "relu 'r': undefined input 'y'", 3);
	expect_error(HDR "relu r r\noutput r\n", "undefined input 'r'", 3);
	expect_error(HDR "conv c x out=8 k=1\nadd a x c\noutput a\n", "add 'a': input 'c' is 8x16x16 but 'x' is 3x16x16", 4);
	expect_error(HDR "conv c x out=8 k=1 s=2\nconcat a x c\noutput a\n", "equal H x W", 4);
	expect_error(HDR "conv c x out=8 k=3 g=2\noutput c\n", "g=2 does not divide", 3);
	expect_error(HDR "conv c x out=8 k=17\noutput c\n", "does not fit", 3);
	expect_error(HDR "\n\nmaxpool m x k=2\nmaxpool m2 m k=2\nmaxpool m3 m2 k=2\nmaxpool m4 m3 k=2\nmaxpool m5 m4 k=2\noutput m5\n",
		     "window 2x2 does not fit the 3x1x1 input", 9);
	expect_error(HDR "maxpool m x k=2 p=2\noutput m\n", "more than half", 3);
	expect_error(HDR "conv c x out=8 k=abc\noutput c\n", "bad number 'abc' for 'k'", 3);
	expect_error(HDR "conv c x out=8 k=3x\noutput c\n", "bad number '3x' for 'k'", 3);
	expect_error(HDR "conv c x out=-8 k=3\noutput c\n", "bad number '-8' for 'out'", 3);
	expect_error(HDR "conv c x out=0 k=3\noutput c\n", "'out' out of range 1..65536: 0", 3);
	expect_error(HDR "conv c x out=8 k=3 s=0x1\noutput c\n", "'s' out of range 1..255: 0x1", 3);
	expect_error(HDR "conv c x out=8 k=3 bias=2\noutput c\n", "bad value '2' for 'bias' (0 or 1)", 3);
	expect_error(HDR "bn b x eps=nan\noutput b\n", "bad number 'nan' for 'eps'", 3);
	expect_error(HDR "bn b x eps=1e999\noutput b\n", "bad number '1e999' for 'eps'", 3);
	expect_error(HDR "dropout d x p=1\noutput d\n", "'p' out of range 0..1 (exclusive): 1", 3);
	expect_error(HDR "conv c x k=3\noutput c\n", "conv 'c': missing attribute 'out'", 3);
	expect_error(HDR "conv c x out=8 k=3 k=3\noutput c\n", "attribute 'k' given twice", 3);
	expect_error(HDR "conv c x out=8 k=3 x\noutput c\n", "'x' follows the attributes", 3);
	expect_error(HDR "add a x\noutput a\n", "add 'a': needs 2 to 256 inputs, got 1", 3);
	expect_error(HDR "relu r x x\noutput r\n", "relu 'r': needs 1 input, got 2", 3);
	expect_error(HDR "relu\noutput x\n", "relu: missing layer name", 3);
	expect_error(HDR "relu 9r x\noutput x\n", "relu: bad layer name '9r'", 3);
	expect_error(HDR "linear l x out=4\noutput l\n", "is a 3x16x16 map, not a vector (flatten it first)", 3);
	expect_error(HDR "flatten f x\nconv c f out=2 k=1\noutput c\n", "input 'f' is a vector (768)", 4);
	expect_error(HDR "chpad c x out=2\noutput c\n", "out=2 is fewer than the 3 input channels", 3);
	expect_error(HDR "se s x r=4\noutput s\n", "r=4 leaves no channels", 3);
	expect_error(HDR "splat s x\noutput s\n", "radix=2 does not divide the 3 input channels", 3);
	expect_error(HDR "input y 3 4 4\noutput y\n", "a second input line", 3);
	expect_error("mfr-arch 1\ninput x 0 4 4\noutput x\n", "C out of range 1..65536: 0", 2);
	expect_error("mfr-arch 1\ninput x 3 4\noutput x\n", "expected 'input NAME C H W'", 2);
	expect_error(HDR "output y\n", "output: undefined tensor 'y'", 3);
	expect_error(HDR "output x\noutput x\n", "output 'x': listed twice", 4);
	expect_error(HDR "relu r x\n", "'t.arch': no output line", 0);
	expect_error("mfr-arch 1\n# nothing\n", "'t.arch': no input line", 0);
	expect_error("mfr-arch 1\noutput x\n", "undefined tensor 'x'", 2);
	expect_error("mfr-arch 2\ninput x 3 4 4\noutput x\n", "unsupported version '2'", 1);
	expect_error("input x 3 4 4\noutput x\n", "not an .arch text (the first line must be 'mfr-arch 1')", 1);
	expect_error("", "not an .arch text", 1);
	expect_error(HDR "relu r\xc3\xa9 x\noutput x\n", "byte 0xc3 is not allowed", 3);
	expect_error("mfr-arch 1\ninput x 65536 16384 16384\noutput x\n", "larger than 268435456 elements", 2);
	expect_error(HDR "conv c x out=65536 k=255 p=127\noutput c\n", "more than 2147483647 elements", 3);
	/* an embedded NUL byte is refused, not taken for the end */
	static const char nul[] = HDR "relu r x\0\noutput r\n";
	a = mfr_arch_parse(nul, sizeof nul - 1, "t.arch", &e);
	CHECK(!a && strstr(e.msg, "line 3: byte 0x00"));
	/* an unknown preset names the known ones */
	char *t = mfr_arch_preset("r51", &e);
	CHECK(!t && strstr(e.msg, "unknown architecture preset 'r51'") && strstr(e.msg, "resnest50"));
	a = mfr_arch_load("/nonexistent/x.arch", &e);
	CHECK(!a && strstr(e.msg, "/nonexistent/x.arch"));
}

/* Every prefix of a preset's text parses (the whole text, or a prefix cut
 * after its last output line) or fails with a message — never a crash. */
static void test_prefixes(void)
{
	mfr_error e;
	char *text = mfr_arch_preset("resnest50", &e);
	CHECK(text != NULL);
	if (!text)
		return;
	size_t n = strlen(text), ok = 0, failed_clean = 0;
	for (size_t k = 0; k <= n; k++) {
		char *cut = malloc(k ? k : 1); /* exact size: ASan sees reads past the end */
		memcpy(cut, text, k);
		mfr_arch *a = mfr_arch_parse(cut, k, "prefix", &e);
		if (a)
			ok++;
		else
			failed_clean += e.msg[0] != 0;
		mfr_arch_free(a);
		free(cut);
	}
	/* only the whole text and the text minus its final newline are complete */
	CHECK_EQ_INT(ok, 2);
	CHECK_EQ_INT(failed_clean, n + 1 - 2);
	free(text);
}

static void test_eng_and_aliases(void)
{
	char b[16];
	CHECK(!strcmp(mfr_arch_eng(b, 0), "0"));
	CHECK(!strcmp(mfr_arch_eng(b, 999), "999"));
	CHECK(!strcmp(mfr_arch_eng(b, 1000), "1.00K"));
	CHECK(!strcmp(mfr_arch_eng(b, 9995), "10.0K"));
	CHECK(!strcmp(mfr_arch_eng(b, 999499), "999K"));
	CHECK(!strcmp(mfr_arch_eng(b, 999500), "1.00M"));
	CHECK(!strcmp(mfr_arch_eng(b, 6309330944ull), "6.31G"));
	CHECK(!strcmp(mfr_arch_eng(b, UINT64_MAX), "18.4E"));
	mfr_error e;
	static const char *pairs[][2] = {{"iresnet100", "r100"}, {"resnext50-32x4d", "resnext50"},
					 {"seresnet50", "se-resnet50"}};
	for (int i = 0; i < 3; i++) {
		char *x = mfr_arch_preset(pairs[i][0], &e), *y = mfr_arch_preset(pairs[i][1], &e);
		CHECK(x && y && !strcmp(x, y));
		free(x);
		free(y);
	}
	CHECK(!strcmp(mfr_op_name(MFR_OP_SPLAT), "splat") && !strcmp(mfr_op_name(MFR_OP_COUNT), "?"));
}

int main(void)
{
	test_presets_round_trip();
	test_iresnet_macs();
	test_iresnet_params();
	test_small_graphs();
	test_errors();
	test_prefixes();
	test_eng_and_aliases();
	return check_done();
}
