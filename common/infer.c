/* infer.c — inference on the CPU or a GPU behind one interface (infer.h). */
#include "infer.h" /* defines: mfr_infer_* */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnnl_cpu.h" /* defines: mfr_cpu_backend, mfr_cpu_threads */
#include "net.h"      /* defines: mfr_net_* */
#ifdef MFR_HAVE_CUDA
#include "gnet.h" /* defines: mfr_gnet_* */
#endif

struct mfr_infer {
	const mfr_arch *a;
	int max_batch;
	mfr_net *net;
	char desc[320];
#ifdef MFR_HAVE_CUDA
	mfr_gpu *g;
	mfr_gnet *gn;
	mfr_dtype t;
	float *xf, *of;  /* device: the batch as uploaded (NCHW fp32), an output in fp32 */
	void *x;         /* device: the batch in the net's type, NHWC */
	long batches;    /* run so far (for MFR_GPU_PROFILE's report) */
#endif
};

const char *mfr_device_default(void)
{
	const char *d = getenv("MFR_DEVICE");
	return d && *d ? d : "auto";
}

int mfr_device_select(const char *name, int *gpu, mfr_error *e)
{
	char why[128];
	*gpu = 0;
	if (!name)
		name = mfr_device_default();
	if (!strcmp(name, "cpu"))
		return 0;
	if (!strcmp(name, "auto"))
		return mfr_gpu_count(why, sizeof why) > 0;
	if (strncmp(name, "cuda", 4) || (name[4] && name[4] != ':'))
		return mfr_fail(e, "unknown device '%s' (cpu, cuda, cuda:N, auto)", name);
	if (name[4] == ':') {
		char *end;
		long v = strtol(name + 5, &end, 10);
		if (end == name + 5 || *end || v < 0 || v > 1023)
			return mfr_fail(e, "unknown device '%s' (cpu, cuda, cuda:N, auto)", name);
		*gpu = (int)v;
	}
	int n = mfr_gpu_count(why, sizeof why);
	if (n == 0)
		return mfr_fail(e, "device %s: no GPU: %s", name, why);
	if (*gpu >= n)
		return mfr_fail(e, "device %s: there %s only %d GPU%s", name, n == 1 ? "is" : "are", n, n == 1 ? "" : "s");
	return 1;
}

mfr_infer *mfr_infer_new(const mfr_arch *a, const mfr_model *m, int max_batch, const char *device, mfr_dtype t,
			 mfr_error *e)
{
	int dev, on_gpu = mfr_device_select(device, &dev, e);
	if (on_gpu < 0)
		return NULL;
	if (!device)
		device = mfr_device_default();
	mfr_infer *f = calloc(1, sizeof *f);
	if (!f) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	f->a = a;
	f->max_batch = max_batch;
	if (!on_gpu) {
		if (!(f->net = mfr_net_new(a, max_batch, 0, e)) || mfr_net_load(f->net, m, e) < 0)
			goto fail;
		snprintf(f->desc, sizeof f->desc, "CPU, %s, %d threads", mfr_cpu_backend(), mfr_cpu_threads());
		return f;
	}
#ifdef MFR_HAVE_CUDA
	f->t = t;
	const mfr_shape *in = &a->layers[0].shape;
	size_t xin = (size_t)max_batch * in->c * in->h * in->w, omax = 0;
	for (int k = 0; k < a->n_outputs; k++) {
		const mfr_shape *os = &a->layers[a->outputs[k]].shape;
		size_t o = (size_t)os->c * os->h * os->w;
		omax = o > omax ? o : omax;
	}
	if (!(f->g = mfr_gpu_open(dev, e)) || !(f->gn = mfr_gnet_new(f->g, a, max_batch, 0, t, e)))
		goto fail;
	if (!(f->xf = mfr_gpu_alloc(f->g, xin * 4, e)) || !(f->x = mfr_gpu_alloc(f->g, xin * mfr_dtype_size(t), e)) ||
	    !(f->of = mfr_gpu_alloc(f->g, omax * (size_t)max_batch * 4, e)))
		goto fail;
	/* the model's tensors in the parameter block's order (mfr_net_load
	 * checks names and shapes), then one copy up */
	mfr_net *staging = mfr_net_new(a, 1, 0, e);
	int rc = staging && mfr_net_load(staging, m, e) == 0 ? mfr_gnet_put_params(f->gn, mfr_net_params(staging), e) : -1;
	mfr_net_free(staging);
	if (rc < 0)
		goto fail;
	snprintf(f->desc, sizeof f->desc, "GPU %d %s, %s", dev, mfr_gpu_name(f->g), mfr_dtype_name(t));
	return f;
#else
	(void)t;
	mfr_fail(e, "device %s: built without CUDA", device);
#endif
fail:
	mfr_infer_free(f);
	return NULL;
}

void mfr_infer_free(mfr_infer *f)
{
	if (!f)
		return;
	mfr_net_free(f->net);
#ifdef MFR_HAVE_CUDA
	if (f->g) {
		if (f->batches) /* MFR_GPU_PROFILE=1: where the batches' GPU time went */
			mfr_gpu_profile_report(f->g, stderr, (double)f->batches, "batch");
		mfr_gpu_free(f->g, f->xf);
		mfr_gpu_free(f->g, f->x);
		mfr_gpu_free(f->g, f->of);
		mfr_gnet_free(f->gn);
		mfr_gpu_close(f->g);
	}
#endif
	free(f);
}

int mfr_infer_run(mfr_infer *f, const float *x, int n, int k, float *out, mfr_error *e)
{
	const mfr_shape *os = &f->a->layers[f->a->outputs[k]].shape;
	size_t dim = (size_t)os->c * os->h * os->w;
	if (f->net) {
		if (mfr_net_forward(f->net, x, n, 0, 0, e) < 0)
			return -1;
		memcpy(out, mfr_net_output(f->net, k, NULL), (size_t)n * dim * sizeof *out);
		return 0;
	}
#ifdef MFR_HAVE_CUDA
	if (n < 1 || n > f->max_batch)
		return mfr_fail(e, "batch of %d images: built for 1..%d", n, f->max_batch);
	const mfr_shape *in = &f->a->layers[0].shape;
	int hw = in->h * in->w;
	if (mfr_gpu_put(f->g, f->xf, x, (size_t)n * in->c * hw * 4, e) < 0)
		return -1;
	mfr_gpu_span(f->g, "input layout");
	mfr_to_nhwc_cuda(f->x, f->t, f->xf, MFR_F32, n, in->c, hw, 0, f->g);
	if (mfr_gpu_check(f->g, "input", e) < 0 || mfr_gnet_forward(f->gn, f->x, n, 0, 0, e) < 0)
		return -1;
	/* the output back in the reference's layout and in float */
	mfr_gpu_span(f->g, "output layout");
	mfr_to_nchw_cuda(f->of, MFR_F32, mfr_gnet_output(f->gn, k, NULL), f->t, n, os->c, os->h * os->w, 0, f->g);
	mfr_gpu_span(f->g, NULL);
	if (mfr_gpu_check(f->g, "output", e) < 0 || mfr_gpu_get(f->g, out, f->of, (size_t)n * dim * 4, e) < 0)
		return -1;
	if (!mfr_gpu_profiling(f->g))
		return 0;
	f->batches++;
	return mfr_gpu_profile_collect(f->g, e);
#else
	return mfr_fail(e, "built without CUDA");
#endif
}

const char *mfr_infer_describe(const mfr_infer *f) { return f->desc; }
