/* mfr-embed — run a face model over FACE streams and write EMBEDDING
 * streams with the same ids, labels and flags; or describe an architecture.
 *
 * Images are fed in the model file's input convention (size, channel order,
 * (pixel - mean) * scale, NCHW). A face whose size differs from the model's
 * input is aligned from its landmarks to the model's template; without
 * landmarks that is an error, never a silent resize. --flip adds the
 * features of the mirrored image (insightface's verification protocol). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"   /* defines: mfr_arch_load, mfr_arch_describe */
#include "cli.h"    /* defines: mfr_getopt, mfr_die */
#include "dnnl_cpu.h" /* defines: mfr_cpu_set_threads, mfr_cpu_backend */
#include "feed.h"   /* defines: mfr_face_to_input */
#include "image.h"  /* defines: mfr_image_decode, mfr_align_face */
#include "model.h"  /* defines: mfr_model_load */
#include "infer.h"  /* defines: mfr_infer_*, mfr_device_select */
#include "record.h" /* defines: mfr_face_decode, mfr_embedding_encode */
#include "stream.h" /* defines: mfr_reader_*, mfr_writer_* */

enum { O_DESCRIBE = 256, O_FLIP, O_NORMALIZE, O_FP16, O_OUTPUT_NAME, O_DEVICE, O_DTYPE };

static const mfr_option opts[] = {
	{"model", 'm', "MODEL", "the model file (.mfrm)"},
	{"output", 'o', "FILE", "write to FILE (via FILE.tmp, renamed on success) instead of stdout"},
	{"batch", 'b', "N", "images per forward pass, 1..4096 (default 32)"},
	{"threads", 'j', "N", "compute threads, 0 = all cores (default 0)"},
	{"device", O_DEVICE, "DEV", "cpu, cuda, cuda:N, or auto: the first GPU if there is one (default: $MFR_DEVICE, else auto)"},
	{"dtype", O_DTYPE, "T", "the GPU's arithmetic: fp16 (default), bf16 or fp32 (ignored on the CPU)"},
	{"flip", O_FLIP, NULL, "add the features of the horizontally mirrored image"},
	{"normalize", O_NORMALIZE, NULL, "L2-normalise each embedding"},
	{"fp16", O_FP16, NULL, "store the vectors as fp16 instead of fp32"},
	{"layer", O_OUTPUT_NAME, "NAME", "embed the output of layer NAME (default: the first output)"},
	{"describe", O_DESCRIBE, "ARCH", "print ARCH's layers, parameters and MACs (a preset name, .arch file or .mfrm model)"},
	{0},
};

static const mfr_tool tool = {
	"mfr-embed",
	"-m MODEL [-b N] [-j N] [--device DEV] [--dtype T] [--flip] [--normalize] [--fp16] [--layer NAME] [-o FILE] [FILE...]\n"
	"--describe ARCH",
	"Embed the faces of FACE streams with a model into an EMBEDDING stream (stdout unless -o).\n"
	"No FILE, or -, reads stdin. Presets for --describe: r18 r34 r50 r100 r200 resnet50\n"
	"se-resnet50 resnext50 resnest50.",
	opts,
};

typedef struct {
	const mfr_model *m;
	mfr_jpeg *jpeg;
	int W, H, C;
	float *x;      /* batch of normalised images, NCHW */
	uint64_t *ids;
	int32_t *labels;
	uint32_t *flags;
} feeder;

/* Decodes face f into slot k of the batch, aligning it when needed. */
static void feed(feeder *fd, const mfr_record *rec, const mfr_face *f, int k)
{
	mfr_error e;
	uint32_t flags;
	if (mfr_face_to_input(fd->jpeg, f, &fd->m->input, 0, NULL, NULL, 0, 0, fd->x + (size_t)k * 3 * fd->W * fd->H, &flags,
			      &e) < 0)
		mfr_die("'%s': record %llu at byte %llu: %s", rec->path, (unsigned long long)rec->number,
			(unsigned long long)rec->offset, e.msg);
	fd->ids[k] = f->id;
	fd->labels[k] = f->label;
	fd->flags[k] = flags;
}

/* Mirrors every image of the batch left-right, in place. */
static void mirror(float *x, int n, int C, int H, int W)
{
	for (size_t r = 0; r < (size_t)n * C * H; r++) {
		float *row = x + r * W;
		for (int i = 0, j = W - 1; i < j; i++, j--) {
			float t = row[i];
			row[i] = row[j];
			row[j] = t;
		}
	}
}

int main(int argc, char **argv)
{
	const char *model_path = NULL, *out = NULL, *describe = NULL, *layer = NULL, *device = NULL;
	int batch = 32, threads = 0, flip = 0, normalize = 0, fp16 = 0, dtype = MFR_F16, c;
	while ((c = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (c) {
		case 'm': model_path = optarg; break;
		case 'o': out = optarg; break;
		case 'b': batch = (int)mfr_parse_int(optarg, 1, 4096, "batch size"); break;
		case 'j': threads = (int)mfr_parse_int(optarg, 0, 1024, "thread count"); break;
		case O_FLIP: flip = 1; break;
		case O_NORMALIZE: normalize = 1; break;
		case O_FP16: fp16 = 1; break;
		case O_OUTPUT_NAME: layer = optarg; break;
		case O_DESCRIBE: describe = optarg; break;
		case O_DEVICE: device = optarg; break;
		case O_DTYPE:
			if ((dtype = mfr_dtype_parse(optarg)) < 0)
				mfr_usage_error("--dtype: unknown type '%s' (fp16, bf16, fp32)", optarg);
			break;
		}
	}
	mfr_error e;
	if (describe) {
		if (model_path || optind < argc)
			mfr_usage_error("--describe takes no model and no input");
		mfr_arch *a = NULL;
		char *preset = mfr_arch_preset(describe, NULL);
		if (!preset && mfr_model_probe(describe)) { /* a model's architecture */
			mfr_model dm = {0};
			if (mfr_model_load(describe, &dm, &e) < 0)
				mfr_die_error(&e);
			a = mfr_arch_parse(dm.arch, strlen(dm.arch), describe, &e);
			mfr_model_free(&dm);
		} else {
			a = mfr_arch_load(describe, &e);
		}
		free(preset);
		if (!a)
			mfr_die_error(&e);
		if (mfr_arch_describe(a, stdout, &e) < 0)
			mfr_die_error(&e);
		mfr_arch_free(a);
		return mfr_close_stdout(0);
	}
	if (!model_path)
		mfr_usage_error("no model: give -m MODEL");
	mfr_cpu_set_threads(threads);

	mfr_model m;
	if (mfr_model_load(model_path, &m, &e) < 0)
		mfr_die_error(&e);
	mfr_arch *a = mfr_arch_parse(m.arch, strlen(m.arch), model_path, &e);
	if (!a)
		mfr_die_error(&e);
	const mfr_layer *inl = &a->layers[0];
	if (inl->shape.c != 3 || inl->shape.w != m.input.width || inl->shape.h != m.input.height)
		mfr_die("'%s': the architecture's input is %dx%dx%d but the model's input section says %dx%dx3", model_path,
			inl->shape.c, inl->shape.h, inl->shape.w, m.input.height, m.input.width);
	int out_k = 0;
	if (layer) {
		int li = mfr_arch_find(a, layer);
		out_k = -1;
		for (int k = 0; k < a->n_outputs; k++)
			if (a->outputs[k] == li)
				out_k = k;
		if (out_k < 0)
			mfr_die("'%s': '%s' is not an output of the architecture", model_path, layer);
	}
	mfr_infer *net = mfr_infer_new(a, &m, batch, device, (mfr_dtype)dtype, &e);
	if (!net)
		mfr_die("'%s': %s", model_path, e.msg);
	const mfr_shape *os = &a->layers[a->outputs[out_k]].shape;
	size_t dim = (size_t)os->c * os->h * os->w;
	if (dim > 65536)
		mfr_die("'%s': output '%s' has %zu values per image, more than an embedding may (65536)", model_path,
			a->layers[a->outputs[out_k]].name, dim);

	mfr_reader *r = mfr_reader_open((const char *const *)argv + optind, argc - optind, 0, 0, &e);
	if (!r)
		mfr_die_error(&e);
	if (mfr_reader_schema(r)->kind != MFR_KIND_FACE)
		mfr_die("input is %s, not FACE records", mfr_kind_name(mfr_reader_schema(r)->kind));
	mfr_schema s = {.kind = MFR_KIND_EMBEDDING, .dim = (uint32_t)dim, .dtype = fp16 ? MFR_DTYPE_F16 : MFR_DTYPE_F32};
	mfr_writer *w = mfr_writer_open(out, &s, "mfr-embed", argc, argv, 0, &e);
	if (!w)
		mfr_die_error(&e);

	feeder fd = {.m = &m, .W = m.input.width, .H = m.input.height, .C = 3};
	size_t per = (size_t)3 * fd.W * fd.H;
	fd.x = malloc((size_t)batch * per * sizeof *fd.x);
	fd.ids = malloc((size_t)batch * sizeof *fd.ids);
	fd.labels = malloc((size_t)batch * sizeof *fd.labels);
	fd.flags = malloc((size_t)batch * sizeof *fd.flags);
	float *acc = malloc((size_t)batch * dim * sizeof *acc), *mir = malloc((size_t)batch * dim * sizeof *mir);
	uint8_t *buf = malloc(mfr_embedding_size(&s));
	if (!fd.x || !fd.ids || !fd.labels || !fd.flags || !acc || !mir || !buf || !(fd.jpeg = mfr_jpeg_new(&e)))
		mfr_die("out of memory");
	mfr_progress pr;
	mfr_progress_start(&pr, "mfr-embed", 0);
	double t0 = mfr_now();
	int k = 0, more = 1;
	uint64_t done = 0;
	while (more) {
		mfr_record rec;
		int got = mfr_reader_next(r, &rec, &e);
		if (got < 0) {
			mfr_writer_abort(w);
			mfr_die_error(&e);
		}
		more = got == 1;
		if (more) {
			mfr_face f;
			if (mfr_face_decode(rec.data, rec.size, &f, &e) < 0)
				mfr_die("'%s': bad record %llu at byte %llu: %s", rec.path, (unsigned long long)rec.number,
					(unsigned long long)rec.offset, e.msg);
			feed(&fd, &rec, &f, k++);
		}
		if (k == batch || (!more && k > 0)) {
			if (mfr_infer_run(net, fd.x, k, out_k, acc, &e) < 0)
				mfr_die_error(&e);
			if (flip) {
				mirror(fd.x, k, 3, fd.H, fd.W);
				if (mfr_infer_run(net, fd.x, k, out_k, mir, &e) < 0)
					mfr_die_error(&e);
				for (size_t i = 0; i < (size_t)k * dim; i++)
					acc[i] += mir[i];
			}
			for (int i = 0; i < k; i++) {
				float *v = acc + (size_t)i * dim;
				if (normalize) {
					double ss = 0;
					for (size_t d = 0; d < dim; d++)
						ss += (double)v[d] * v[d];
					float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
					for (size_t d = 0; d < dim; d++)
						v[d] *= inv;
				}
				for (size_t d = 0; d < dim; d++)
					if (!isfinite(v[d]))
						mfr_die("the model produced a non-finite value for record id %llu",
							(unsigned long long)fd.ids[i]);
				mfr_embedding emb = {.id = fd.ids[i], .label = fd.labels[i], .flags = fd.flags[i], .vec = v};
				mfr_embedding_encode(&emb, &s, buf);
				if (mfr_writer_put(w, MFR_REC_DATA, buf, mfr_embedding_size(&s), &e) < 0)
					mfr_die_error(&e);
			}
			done += (uint64_t)k;
			mfr_progress_add(&pr, (uint64_t)k);
			k = 0;
		}
	}
	mfr_progress_end(&pr);
	double secs = mfr_now() - t0;
	mfr_reader_close(r);
	if (mfr_writer_close(w, &e) < 0)
		mfr_die_error(&e);
	fprintf(stderr, "mfr-embed: %llu faces in %.2f s (%.1f img/s%s; %s)\n", (unsigned long long)done, secs,
		secs > 0 ? done / secs : 0.0, flip ? ", each also mirrored" : "", mfr_infer_describe(net));
	mfr_jpeg_free(fd.jpeg);
	free(fd.x);
	free(fd.ids);
	free(fd.labels);
	free(fd.flags);
	free(acc);
	free(mir);
	free(buf);
	mfr_infer_free(net);
	mfr_arch_free(a);
	mfr_model_free(&m);
	return mfr_close_stdout(0);
}
