/* mfr-model — create and inspect model files (.mfrm): a fresh model of an
 * architecture with seeded initial weights, a real pretrained one converted
 * (dlib's face descriptor from face-api.js's weights), a model's summary, or
 * its architecture text (to edit and reuse). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"  /* defines: mfr_arch_load, mfr_arch_describe */
#include "cli.h"   /* defines: mfr_getopt, mfr_die */
#include "dlib.h"  /* defines: mfr_dlib_convert */
#include "model.h" /* defines: mfr_model_* */
#include "net.h"   /* defines: mfr_net_init, mfr_net_store */

enum { O_NEW = 256, O_INFO, O_ARCH, O_SEED, O_FP16, O_FROM_DLIB, O_COMPARE, O_TOL };

static const mfr_option opts[] = {
	{"new", O_NEW, "ARCH", "create a model of ARCH (preset name or .arch file) with seeded weights"},
	{"seed", O_SEED, "S", "with --new: the initialisation seed (default 1)"},
	{"fp16", O_FP16, NULL, "with --new: store the tensors as fp16"},
	{"from-dlib", O_FROM_DLIB, "DIR", "convert dlib's face descriptor from face-api.js's weights in DIR"},
	{"output", 'o', "FILE", "with --new or --from-dlib: the model file to write (required)"},
	{"info", O_INFO, "MODEL", "print a model's input convention, tensors and layer table"},
	{"arch", O_ARCH, "MODEL", "print a model's architecture text"},
	{"compare", O_COMPARE, "MODEL", "compare the tensors of MODEL and the operand MODEL2 (checkpoints too)"},
	{"tolerance", O_TOL, "T", "with --compare: exit 1 when a value differs by more than T x max(1, max |tensor|) (default 0)"},
	{0},
};

static const mfr_tool tool = {
	"mfr-model",
	"--new ARCH [--seed S] [--fp16] -o MODEL\n"
	"--from-dlib DIR -o MODEL\n"
	"--info MODEL\n"
	"--arch MODEL\n"
	"--compare MODEL [--tolerance T] MODEL2",
	"Create a model file with seeded initial weights (insightface's input convention:\n"
	"112x112 RGB, (x - 127.5) / 128, the ArcFace template); convert dlib's ResNet face\n"
	"descriptor from face-api.js's TensorFlow.js weights (DIR holds\n"
	"face_recognition_model-weights_manifest.json and its .bin; 150x150 input, dlib's\n"
	"template and normalisation); or inspect a model.",
	opts,
};

/* Prints, per tensor of a present in both, the largest absolute difference
 * and that relative to the tensor's largest magnitude; returns 0 when both
 * hold the same architecture and tensors and every difference is within
 * tol x max(1, the tensor's largest magnitude), else 1. */
static int compare_models(const char *pa, const char *pb, double tol)
{
	mfr_model a, b;
	mfr_error e;
	if (mfr_model_load(pa, &a, &e) < 0 || mfr_model_load(pb, &b, &e) < 0)
		mfr_die_error(&e);
	int bad = strcmp(a.arch, b.arch) != 0;
	if (bad)
		printf("architecture: differs\n");
	double worst = 0;
	for (int i = 0; i < a.ntensors; i++) {
		const mfr_tensor *x = &a.tensors[i], *y = mfr_model_find(&b, x->name);
		if (!y || y->numel != x->numel) {
			printf("%s: %s\n", x->name, y ? "different shape" : "only in the first");
			bad = 1;
			continue;
		}
		double dmax = 0, vmax = 0;
		for (size_t k = 0; k < x->numel; k++) {
			double d = fabs((double)x->data[k] - y->data[k]);
			if (d > dmax || d != d)
				dmax = d;
			vmax = fmax(vmax, fabs((double)x->data[k]));
		}
		double rel = dmax / fmax(vmax, 1);
		if (rel > worst || rel != rel)
			worst = rel;
		if (dmax > 0)
			printf("%s: max |a-b| %.3g (relative to max |a| %.3g)\n", x->name, dmax, vmax > 0 ? dmax / vmax : 0);
	}
	for (int i = 0; i < b.ntensors; i++)
		if (!mfr_model_find(&a, b.tensors[i].name)) {
			printf("%s: only in the second\n", b.tensors[i].name);
			bad = 1;
		}
	printf("tensors: %d and %d, largest difference %.3g (of max(1, max |a|))%s\n", a.ntensors, b.ntensors, worst,
	       worst == 0 && !bad ? " (identical values)" : "");
	bad |= !(worst <= tol);
	mfr_model_free(&a);
	mfr_model_free(&b);
	return mfr_close_stdout(bad);
}

int main(int argc, char **argv)
{
	const char *new_arch = NULL, *info = NULL, *arch = NULL, *out = NULL, *dlib = NULL;
	uint64_t seed = 1;
	const char *compare = NULL;
	double tol = 0;
	int fp16 = 0, c;
	while ((c = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (c) {
		case O_NEW: new_arch = optarg; break;
		case O_SEED: seed = (uint64_t)mfr_parse_int(optarg, 0, INT64_MAX, "seed"); break;
		case O_FP16: fp16 = 1; break;
		case 'o': out = optarg; break;
		case O_INFO: info = optarg; break;
		case O_ARCH: arch = optarg; break;
		case O_FROM_DLIB: dlib = optarg; break;
		case O_COMPARE: compare = optarg; break;
		case O_TOL: tol = mfr_parse_real(optarg, 0, 1e30, "tolerance"); break;
		}
	}
	if (compare) {
		if (new_arch || info || arch || dlib || optind != argc - 1)
			mfr_usage_error("--compare takes one model and one operand model");
		return compare_models(compare, argv[optind], tol);
	}
	if (optind < argc)
		mfr_usage_error("unexpected operand '%s'", argv[optind]);
	if (!!new_arch + !!info + !!arch + !!dlib != 1)
		mfr_usage_error("give one of --new, --from-dlib, --info, --arch");
	if ((new_arch || dlib) && !out)
		mfr_usage_error("%s needs -o MODEL", new_arch ? "--new" : "--from-dlib");
	if (!new_arch && !dlib && out)
		mfr_usage_error("-o goes with --new or --from-dlib");
	if (!new_arch && fp16)
		mfr_usage_error("--fp16 goes with --new");
	mfr_error e;
	if (dlib) {
		mfr_model m;
		if (mfr_dlib_convert(dlib, &m, &e) < 0 || mfr_model_save(out, &m, &e) < 0)
			mfr_die_error(&e);
		size_t values = 0;
		for (int i = 0; i < m.ntensors; i++)
			values += m.tensors[i].numel;
		fprintf(stderr, "mfr-model: '%s': dlib's ResNet face descriptor, %d tensors, %zu values, 150x150 input\n",
			out, m.ntensors, values);
		mfr_model_free(&m);
		return mfr_close_stdout(0);
	}
	if (new_arch) {
		mfr_arch *a = mfr_arch_load(new_arch, &e);
		if (!a)
			mfr_die_error(&e);
		mfr_model m = {0};
		if (!(m.arch = mfr_arch_format(a, NULL, &e)))
			mfr_die_error(&e);
		mfr_input_spec_insightface(&m.input);
		const mfr_layer *in = &a->layers[0];
		if (in->shape.c != 3)
			mfr_die("'%s': the input has %d channels; models take RGB images (3)", new_arch, in->shape.c);
		m.input.width = in->shape.w;
		m.input.height = in->shape.h;
		if (in->shape.w != 112 || in->shape.h != 112) /* the ArcFace template is for 112x112 */
			m.input.has_template = 0;
		mfr_net *n = mfr_net_new(a, 1, 0, &e);
		if (!n)
			mfr_die_error(&e);
		mfr_net_init(n, seed);
		if (mfr_net_store(n, &m, fp16, &e) < 0 || mfr_model_save(out, &m, &e) < 0)
			mfr_die_error(&e);
		fprintf(stderr, "mfr-model: '%s': %d tensors, %llu parameters, seed %llu\n", out, m.ntensors,
			(unsigned long long)a->params, (unsigned long long)seed);
		mfr_net_free(n);
		mfr_model_free(&m);
		mfr_arch_free(a);
		return mfr_close_stdout(0);
	}
	mfr_model m;
	if (mfr_model_load(info ? info : arch, &m, &e) < 0)
		mfr_die_error(&e);
	if (arch) {
		fputs(m.arch, stdout);
		mfr_model_free(&m);
		return mfr_close_stdout(0);
	}
	const mfr_input_spec *s = &m.input;
	printf("input: %dx%dx%d %s, (x - [%g %g %g]) * [%g %g %g]\n", s->width, s->height, s->channels,
	       s->bgr ? "BGR" : "RGB", s->mean[0], s->mean[1], s->mean[2], s->scale[0], s->scale[1], s->scale[2]);
	if (s->has_template) {
		printf("template:");
		for (int i = 0; i < 10; i++)
			printf(" %g", s->template_lm[i]);
		putchar('\n');
	} else
		printf("template: none\n");
	size_t values = 0;
	int half = 0;
	for (int i = 0; i < m.ntensors; i++) {
		values += m.tensors[i].numel;
		half += m.tensors[i].dtype == MFR_TDTYPE_F16;
	}
	printf("tensors: %d (%zu values, %d stored as fp16)\n", m.ntensors, values, half);
	printf("optional sections: %d\n", m.nextra);
	mfr_arch *a = mfr_arch_parse(m.arch, strlen(m.arch), info, &e);
	if (!a)
		mfr_die_error(&e);
	if (mfr_arch_describe(a, stdout, &e) < 0)
		mfr_die_error(&e);
	mfr_arch_free(a);
	mfr_model_free(&m);
	return mfr_close_stdout(0);
}
