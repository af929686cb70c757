/* test_dlib.c — the dlib converter: the strict JSON reader (valid documents,
 * every truncation, bad numbers, escapes and structure, with byte offsets),
 * the tfjs manifest reader and its dequantisation arithmetic, shard size
 * checks, the generated .arch (parses; parameters and MACs), and, when the
 * shared data is present, the conversion of the real face-api model: tensor
 * count, shapes and the HWIO -> OIHW and (in,out) -> (out,in) transposes
 * checked against the raw bytes of the shard. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch.h"
#include "check.h"
#include "dlib.h"
#include "net.h"

static mfr_json *parse(const char *s, mfr_error *e) { return mfr_json_parse(s, strlen(s), "t", e); }

/* bad JSON text s must fail with a message naming byte at (at < 0: any) */
static void bad(const char *s, int at)
{
	mfr_error e;
	mfr_json *j = parse(s, &e);
	if (!CHECK(j == NULL)) {
		fprintf(stderr, "    accepted: %s\n", s);
		mfr_json_free(j);
		return;
	}
	char want[32];
	snprintf(want, sizeof want, "byte %d:", at);
	if (!CHECK(at < 0 ? strstr(e.msg, "byte ") != NULL : strstr(e.msg, want) != NULL))
		fprintf(stderr, "    %s -> %s (want %s)\n", s, e.msg, at < 0 ? "a byte offset" : want);
}

static void test_json_valid(void)
{
	mfr_error e;
	const char *doc = " {\"a\": [1, -2.5e-3, 0, 1E+2, true, false, null],\n"
			  "  \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\xc3\xa9\",\n"
			  "  \"o\": {\"k\": {}}, \"e\": []} ";
	mfr_json *j = parse(doc, &e);
	if (!CHECK(j != NULL)) {
		fprintf(stderr, "    %s\n", e.msg);
		return;
	}
	CHECK_EQ_INT(j->type, MFR_JSON_OBJECT);
	CHECK_EQ_INT(j->n, 4);
	CHECK_EQ_INT(j->at, 1);
	const mfr_json *a = mfr_json_get(j, "a");
	CHECK(a && a->type == MFR_JSON_ARRAY && a->n == 7);
	if (a && a->n == 7) {
		CHECK(a->items[0].num == 1 && a->items[1].num == -2.5e-3 && a->items[2].num == 0 && a->items[3].num == 100);
		CHECK(a->items[4].type == MFR_JSON_TRUE && a->items[5].type == MFR_JSON_FALSE &&
		      a->items[6].type == MFR_JSON_NULL);
		CHECK_EQ_INT(a->items[1].at, 11);
	}
	const mfr_json *s = mfr_json_get(j, "s");
	const char want[] = "q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80\xc3\xa9";
	CHECK(s && s->type == MFR_JSON_STRING && s->len == strlen(want) && !strcmp(s->str, want));
	const mfr_json *o = mfr_json_get(j, "o");
	CHECK(o && mfr_json_get(o, "k") && mfr_json_get(o, "k")->type == MFR_JSON_OBJECT);
	CHECK(mfr_json_get(j, "e") && mfr_json_get(j, "e")->n == 0);
	CHECK(mfr_json_get(j, "missing") == NULL && mfr_json_get(a, "a") == NULL);

	/* every strict prefix of a document whose top level is a container fails
	 * cleanly (ASan catches a read past the prefix: each is a fresh copy) */
	size_t n = strlen(doc);
	int ok = 1;
	for (size_t k = 0; k < n - 1; k++) { /* the last byte is white space */
		char *cut = malloc(k ? k : 1);
		memcpy(cut, doc, k);
		mfr_json *t = mfr_json_parse(cut, k, "t", &e);
		if (t || !strstr(e.msg, "byte ")) {
			ok = 0;
			fprintf(stderr, "    prefix %zu: %s\n", k, t ? "accepted" : e.msg);
		}
		mfr_json_free(t);
		free(cut);
	}
	CHECK(ok);
	mfr_json_free(j);

	/* scalars at the top level, and white space of all four kinds */
	j = parse("\t\r\n 42 \n", &e);
	CHECK(j && j->type == MFR_JSON_NUMBER && j->num == 42);
	mfr_json_free(j);
	j = parse("\"\"", &e);
	CHECK(j && j->type == MFR_JSON_STRING && j->len == 0);
	mfr_json_free(j);
	/* 64 levels are allowed, 65 are not */
	char deep[200] = "";
	for (int k = 0; k < 64; k++)
		strcat(deep, "[");
	for (int k = 0; k < 64; k++)
		strcat(deep, "]");
	j = parse(deep, &e);
	CHECK(j != NULL);
	mfr_json_free(j);
	memmove(deep + 1, deep, strlen(deep) + 1);
	deep[0] = '[';
	strcat(deep, "]");
	bad(deep, 64);
}

static void test_json_bad(void)
{
	/* structure */
	bad("", 0);
	bad("   ", 3);
	bad("[1,2,]", 5);
	bad("[1 2]", 3);
	bad("{\"a\":1,}", 7);
	bad("{\"a\" 1}", 5);
	bad("{a:1}", 1);
	bad("{\"a\":1,\"a\":2}", 7);
	bad("[1]]", 3);
	bad("[1] x", 4);
	bad("// c\n[]", 0);
	bad("[tru]", 1);
	bad("[nul", 1);
	bad("]", 0);
	/* numbers */
	bad("01", 0);
	bad("[1.]", 1);
	bad("[.5]", 1);
	bad("[-]", 1);
	bad("[1e]", 1);
	bad("[1e+]", 1);
	bad("[+1]", 1);
	bad("[1e999]", 1);
	bad("[-1e400]", 1);
	bad("[NaN]", 1);
	bad("[Infinity]", 1);
	bad("[0x10]", 2);
	bad("[1.5.2]", 4);
	char longnum[200] = "[";
	for (int k = 0; k < 130; k++)
		strcat(longnum, "1");
	strcat(longnum, "]");
	bad(longnum, 1);
	/* strings and escapes */
	bad("[\"abc]", 1);
	bad("[\"a\\x\"]", 3);
	bad("[\"a\\u12\"]", -1);
	bad("[\"a\\u12g4\"]", 7);
	bad("[\"\\ud800\"]", 2);
	bad("[\"\\ud800\\u0041\"]", 2);
	bad("[\"\\udc00\"]", 2);
	bad("[\"\\u0000\"]", 2);
	bad("[\"a\tb\"]", 3);
	bad("[\"\xc0\x80\"]", 2);
	bad("[\"\xed\xa0\x80\"]", 2);
	bad("[\"\xf4\x90\x80\x80\"]", 2);
	bad("[\"\xe2\x82\"]", 2);
	bad("[\"\\", -1);
	bad("[\"\\u", -1);
	bad("\"\\ud83d\\u", -1);
	bad("{\"k", -1);
	/* a NUL byte inside the text is not white space */
	mfr_error e;
	CHECK(mfr_json_parse("[1]\0", 4, "t", &e) == NULL && strstr(e.msg, "byte 3"));
}

/* ---- the manifest ---- */

static const char *manifest =
	"[{\"paths\": [\"a.bin\", \"b.bin\"], \"weights\": [\n"
	" {\"name\": \"q8\", \"shape\": [2, 3], \"dtype\": \"float32\",\n"
	"  \"quantization\": {\"dtype\": \"uint8\", \"scale\": 0.5, \"min\": -1, \"original_dtype\": \"float32\"}},\n"
	" {\"name\": \"f\", \"shape\": [2], \"dtype\": \"float32\"},\n"
	" {\"name\": \"q16\", \"shape\": [], \"dtype\": \"float32\",\n"
	"  \"quantization\": {\"dtype\": \"uint16\", \"scale\": 0.25, \"min\": 10}}]}]";

static void test_dequant(void)
{
	uint8_t q[3] = {0, 1, 255};
	float out[3];
	mfr_tfjs_dequant(out, q, 3, 1, 0.0005260649557207145, -0.07101876902229645);
	CHECK(out[0] == (float)-0.07101876902229645);
	CHECK(out[1] == (float)(0.0005260649557207145 - 0.07101876902229645));
	CHECK(out[2] == (float)(255 * 0.0005260649557207145 - 0.07101876902229645));
	uint8_t q16[4] = {0x34, 0x12, 0xff, 0xff};
	mfr_tfjs_dequant(out, q16, 2, 2, 0.25, 10);
	CHECK(out[0] == 0x1234 * 0.25f + 10 && out[1] == 65535 * 0.25f + 10);
	uint8_t f32[8];
	mfr_putf32(f32, -1.5f);
	mfr_putf32(f32 + 4, 3.25e-7f);
	mfr_tfjs_dequant(out, f32, 2, 0, 0, 0);
	CHECK(out[0] == -1.5f && out[1] == 3.25e-7f);
}

static void write_file(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	CHECK(f && fwrite(p, 1, n, f) == n);
	if (f)
		fclose(f);
}

static void bad_manifest(const char *text, const char *want)
{
	mfr_tfjs w;
	mfr_error e;
	int rc = mfr_tfjs_parse(text, strlen(text), "m.json", &w, &e);
	if (!CHECK(rc < 0 && strstr(e.msg, want))) {
		fprintf(stderr, "    %s\n    -> %s (want '%s')\n", text, rc < 0 ? e.msg : "accepted", want);
		if (rc == 0)
			mfr_tfjs_free(&w);
	}
}

static void test_manifest(void)
{
	mfr_tfjs w;
	mfr_error e;
	if (!CHECK(mfr_tfjs_parse(manifest, strlen(manifest), "m.json", &w, &e) == 0)) {
		fprintf(stderr, "    %s\n", e.msg);
		return;
	}
	CHECK(w.ngroups == 1 && w.npaths[0] == 2 && !strcmp(w.paths[0][1], "b.bin") && w.n == 3);
	CHECK(w.t[0].qbytes == 1 && w.t[0].numel == 6 && w.t[0].offset == 0 && w.t[0].bytes == 6);
	CHECK(w.t[1].qbytes == 0 && w.t[1].offset == 6 && w.t[1].bytes == 8);
	CHECK(w.t[2].qbytes == 2 && w.t[2].ndim == 0 && w.t[2].numel == 1 && w.t[2].offset == 14);
	CHECK(w.group_bytes[0] == 16);
	CHECK(mfr_tfjs_find(&w, "f") == &w.t[1] && mfr_tfjs_find(&w, "g") == NULL);
	mfr_tfjs_free(&w);

	/* shards: the bytes split over two files, then one byte short and one long */
	char dir[] = "/tmp/mfr-test-dlib-XXXXXX", path[256];
	if (!CHECK(mkdtemp(dir) != NULL))
		return;
	uint8_t data[17] = {0, 1, 2, 3, 4, 255};
	mfr_putf32(data + 6, 0.5f);
	mfr_putf32(data + 10, -2.0f);
	mfr_put16(data + 14, 4);
	snprintf(path, sizeof path, "%s/m.json", dir);
	write_file(path, manifest, strlen(manifest));
	snprintf(path, sizeof path, "%s/a.bin", dir);
	write_file(path, data, 7);
	snprintf(path, sizeof path, "%s/b.bin", dir);
	write_file(path, data + 7, 9);
	if (CHECK(mfr_tfjs_load(dir, "m.json", &w, &e) == 0)) {
		const float *q = mfr_tfjs_find(&w, "q8")->data, *f = mfr_tfjs_find(&w, "f")->data;
		CHECK(q[0] == -1 && q[1] == -0.5f && q[5] == 126.5f);
		CHECK(f[0] == 0.5f && f[1] == -2.0f);
		CHECK(mfr_tfjs_find(&w, "q16")->data[0] == 11.0f);
		mfr_tfjs_free(&w);
	} else
		fprintf(stderr, "    %s\n", e.msg);
	write_file(path, data + 7, 8);
	CHECK(mfr_tfjs_load(dir, "m.json", &w, &e) < 0 && strstr(e.msg, "15 bytes") && strstr(e.msg, "16"));
	write_file(path, data + 7, 10);
	CHECK(mfr_tfjs_load(dir, "m.json", &w, &e) < 0 && strstr(e.msg, "more than the 16"));
	unlink(path);
	CHECK(mfr_tfjs_load(dir, "m.json", &w, &e) < 0 && strstr(e.msg, "b.bin"));
	CHECK(mfr_tfjs_load(dir, "nothere.json", &w, &e) < 0 && strstr(e.msg, "nothere.json"));
	snprintf(path, sizeof path, "%s/a.bin", dir);
	unlink(path);
	snprintf(path, sizeof path, "%s/m.json", dir);
	unlink(path);
	rmdir(dir);

	bad_manifest("{}", "array of groups");
	bad_manifest("[]", "empty array");
	bad_manifest("[1]", "not an object");
	bad_manifest("[{\"weights\": []}]", "no \"paths\"");
	bad_manifest("[{\"paths\": \"x\", \"weights\": []}]", "must be an array");
	bad_manifest("[{\"paths\": [], \"weights\": []}]", "1..65536 paths");
	bad_manifest("[{\"paths\": [\"../x\"], \"weights\": []}]", "relative");
	bad_manifest("[{\"paths\": [\"/etc/x\"], \"weights\": []}]", "relative");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"shape\": [1], \"dtype\": \"float32\"}]}]", "no \"name\"");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"\", \"shape\": [1], \"dtype\": \"float32\"}]}]",
		     "1..255 bytes");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"x\", \"shape\": [1], \"dtype\": \"int32\"}]}]",
		     "float32 only");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"x\", \"shape\": [1.5], \"dtype\": \"float32\"}]}]",
		     "integer");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"x\", \"shape\": [-1], \"dtype\": \"float32\"}]}]",
		     "integer");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"x\", \"shape\": [65536, 65536], "
		     "\"dtype\": \"float32\"}]}]",
		     "2^31-1");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"x\", \"shape\": [1,1,1,1,1,1,1,1,1], "
		     "\"dtype\": \"float32\"}]}]",
		     "9 dimensions");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"x\", \"shape\": [1], \"dtype\": \"float32\", "
		     "\"quantization\": {\"dtype\": \"float16\", \"scale\": 1, \"min\": 0}}]}]",
		     "not supported");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"x\", \"shape\": [1], \"dtype\": \"float32\", "
		     "\"quantization\": {\"dtype\": \"uint8\", \"scale\": 1}}]}]",
		     "no \"min\"");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"x\", \"shape\": [1], \"dtype\": \"float32\", "
		     "\"quantization\": 7}]}]",
		     "must be an object");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"x\", \"shape\": [1], \"dtype\": \"float32\"},"
		     "{\"name\": \"x\", \"shape\": [1], \"dtype\": \"float32\"}]}]",
		     "appears twice");
	bad_manifest("[{\"paths\": [\"a\"], \"weights\": [{\"name\": \"x\", \"shape\": [1], \"dtype\": \"float32\"}", "byte 77");

	/* every truncation of the example manifest fails with a byte offset */
	size_t n = strlen(manifest);
	int ok = 1;
	for (size_t k = 0; k < n; k++) {
		char *cut = malloc(k ? k : 1);
		memcpy(cut, manifest, k);
		if (mfr_tfjs_parse(cut, k, "m.json", &w, &e) == 0 || !strstr(e.msg, "byte ")) {
			ok = 0;
			fprintf(stderr, "    manifest prefix %zu: %s\n", k, e.msg);
		}
		free(cut);
	}
	CHECK(ok);
}

/* ---- the network ---- */

static void test_arch(void)
{
	mfr_error e;
	char *text = mfr_dlib_arch(&e);
	if (!CHECK(text != NULL))
		return;
	mfr_arch *a = mfr_arch_parse(text, strlen(text), "dlib", &e);
	if (!CHECK(a != NULL)) {
		fprintf(stderr, "    %s\n", e.msg);
		free(text);
		return;
	}
	/* the manifest's 5,614,592 values, each a parameter (the bn running
	 * statistics are buffers, not counted) */
	CHECK_EQ_INT(a->params, 5614592);
	char eng[16];
	CHECK(!strcmp(mfr_arch_eng(eng, a->macs), "272M"));
	const mfr_layer *in = &a->layers[0];
	CHECK(in->shape.c == 3 && in->shape.h == 150 && in->shape.w == 150);
	CHECK_EQ_INT(a->n_outputs, 1);
	const mfr_layer *out = &a->layers[a->outputs[0]];
	CHECK(out->op == MFR_OP_LINEAR && out->shape.vec && out->shape.c == 128 && out->bias == 0);
	/* the spatial sizes dlib's layers give: 72 after the stem, 35 after the
	 * pool, then 17, 8, 4 (the conv's 3 padded to the pool's 4) and 2 */
	static const struct {
		const char *name;
		int c, h;
	} sizes[] = {{"conv32_down.relu", 32, 72}, {"pool", 32, 35},       {"conv64_down", 64, 17},
		     {"conv128_down", 128, 8},      {"conv256_down.conv1.conv", 256, 3}, {"conv256_down", 256, 4},
		     {"conv256_down_out.conv2.scale", 256, 1}, {"conv256_down_out", 256, 2}};
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		int i = mfr_arch_find(a, sizes[k].name);
		if (!CHECK(i >= 0))
			continue;
		const mfr_shape *s = &a->layers[i].shape;
		if (!CHECK(s->c == sizes[k].c && s->h == sizes[k].h && s->w == sizes[k].h))
			fprintf(stderr, "    %s: %dx%dx%d\n", sizes[k].name, s->c, s->h, s->w);
	}
	int l2 = 0, nbn = 0;
	for (int i = 0; i < a->n_layers; i++) {
		l2 += a->layers[i].op == MFR_OP_L2NORM;
		if (a->layers[i].op == MFR_OP_BN) {
			nbn++;
			CHECK(a->layers[i].eps == 1e-20);
		}
	}
	CHECK(l2 == 0 && nbn == 29);
	/* the canonical form round-trips (what an edited copy goes through) */
	char *canon = mfr_arch_format(a, NULL, &e);
	mfr_arch *b = canon ? mfr_arch_parse(canon, strlen(canon), "canon", &e) : NULL;
	CHECK(b && b->params == a->params && b->macs == a->macs && b->n_layers == a->n_layers);
	mfr_arch_free(b);
	free(canon);
	mfr_arch_free(a);
	free(text);
}

static void test_real(void)
{
	const char *data = check_data_dir("converting the real dlib model");
	if (!data)
		return;
	char dir[4200], path[4300];
	snprintf(dir, sizeof dir, "%.4096s/models/dlib_resnet_tfjs", data);
	snprintf(path, sizeof path, "%s/%s", dir, MFR_DLIB_MANIFEST);
	struct stat st;
	if (stat(path, &st) < 0) {
		printf("skip: converting the real dlib model: %s is absent\n", path);
		return;
	}
	mfr_model m;
	mfr_error e;
	if (!CHECK(mfr_dlib_convert(dir, &m, &e) == 0)) {
		fprintf(stderr, "    %s\n", e.msg);
		return;
	}
	/* 117 manifest tensors + 2 running statistics for each of the 29 affines */
	CHECK_EQ_INT(m.ntensors, 117 + 2 * 29);
	CHECK(m.input.width == 150 && m.input.height == 150 && !m.input.bgr && m.input.has_template);
	CHECK(m.input.scale[0] == 1 / 256.0f && m.input.mean[2] == 104.298f);
	const mfr_tensor *w = mfr_model_find(&m, "conv32_down.conv.weight");
	const mfr_tensor *fc = mfr_model_find(&m, "fc.weight");
	const mfr_tensor *rv = mfr_model_find(&m, "conv64_down.conv1.scale.running_var");
	const mfr_tensor *c64 = mfr_model_find(&m, "conv64_down.conv1.conv.weight");
	CHECK(w && w->ndim == 4 && w->dims[0] == 32 && w->dims[1] == 3 && w->dims[2] == 7 && w->dims[3] == 7);
	CHECK(fc && fc->ndim == 2 && fc->dims[0] == 128 && fc->dims[1] == 256);
	CHECK(c64 && c64->dims[0] == 64 && c64->dims[1] == 32 && c64->dims[2] == 3);
	CHECK(rv && rv->numel == 64 && rv->data[0] == 1.0f && rv->data[63] == 1.0f);

	/* the transposes, against the shard's bytes read here: the stem's filters
	 * are the first tensor (uint8), the fc the last (uint8) */
	mfr_tfjs t;
	uint8_t *bin = NULL;
	size_t n;
	snprintf(path, sizeof path, "%s/face_recognition_model.bin", dir);
	if (CHECK(mfr_tfjs_load(dir, MFR_DLIB_MANIFEST, &t, &e) == 0) &&
	    CHECK(mfr_read_file(path, 1u << 30, &bin, &n, &e) == 0) && w && fc && c64) {
		CHECK_EQ_INT(t.n, 117);
		const mfr_tfjs_tensor *s = mfr_tfjs_find(&t, "conv32_down/conv/filters");
		int bad = 0;
		for (int o = 0; o < 32; o++)
			for (int i = 0; i < 3; i++)
				for (int y = 0; y < 7; y++)
					for (int x = 0; x < 7; x++) {
						uint8_t q = bin[((y * 7 + x) * 3 + i) * 32 + o];
						bad += w->data[((o * 3 + i) * 7 + y) * 7 + x] != (float)(q * s->scale + s->min);
					}
		CHECK_EQ_INT(bad, 0);
		const mfr_tfjs_tensor *f = mfr_tfjs_find(&t, "fc");
		CHECK(f && f->offset + 256 * 128 == n);
		for (int o = 0; bad == 0 && f && o < 128; o++)
			for (int d = 0; d < 256; d++)
				bad += fc->data[o * 256 + d] != (float)(bin[f->offset + d * 128 + o] * f->scale + f->min);
		CHECK_EQ_INT(bad, 0);
		/* conv64_down/conv1/conv/filters is stored as plain float32 */
		const mfr_tfjs_tensor *g = mfr_tfjs_find(&t, "conv64_down/conv1/conv/filters");
		CHECK(g && g->qbytes == 0 && g->bytes == 3 * 3 * 32 * 64 * 4);
		for (int o = 0; bad == 0 && g && o < 64; o++)
			for (int i = 0; i < 32; i++)
				bad += c64->data[(o * 32 + i) * 9 + 4] != mfr_getf32(bin + g->offset + 4 * ((4 * 32 + i) * 64 + o));
		CHECK_EQ_INT(bad, 0);
		mfr_tfjs_free(&t);
	}
	free(bin);

	/* the model loads into the executor, and a forward pass gives finite,
	 * varied values */
	mfr_arch *a = mfr_arch_parse(m.arch, strlen(m.arch), "dlib", &e);
	mfr_net *net = a ? mfr_net_new(a, 1, 0, &e) : NULL;
	if (CHECK(net && mfr_net_load(net, &m, &e) == 0)) {
		float *x = malloc(3 * 150 * 150 * sizeof *x);
		mfr_rng r = {7};
		for (int i = 0; i < 3 * 150 * 150; i++)
			x[i] = (float)(mfr_rng_uniform(&r) - 0.5);
		CHECK(mfr_net_forward(net, x, 1, 0, 0, &e) == 0);
		size_t dim;
		const float *y = mfr_net_output(net, 0, &dim);
		int fin = 1;
		for (size_t i = 0; i < dim; i++)
			fin &= isfinite(y[i]);
		CHECK(dim == 128 && fin && y[0] != y[1]);
		free(x);
	} else
		fprintf(stderr, "    %s\n", e.msg);
	mfr_net_free(net);
	mfr_arch_free(a);
	mfr_model_free(&m);

	/* a folder without the model fails naming the manifest */
	CHECK(mfr_dlib_convert(data, &m, &e) < 0 && strstr(e.msg, MFR_DLIB_MANIFEST));
}

int main(void)
{
	test_json_valid();
	test_json_bad();
	test_dequant();
	test_manifest();
	test_arch();
	test_real();
	return check_done();
}
