/* attn.cu — the channel-attention layers of the CUDA backend (contracts in
 * gpu_layers.h): squeeze-excitation and ResNeSt split attention, held
 * against mfr_se_*_ref and mfr_splat_*_ref (layers_elem.c).
 *
 * Activations are NHWC in type t; weights, the saved tensors (SE's pooled,
 * hidden, scale; split attention's save block in exactly the reference's
 * layout) and every intermediate are float32. The fully connected parts are
 * tiny (N <= 512 rows, C <= 2048), so they are plain kernels with one thread
 * per output summing its dot product, not cuBLAS: every sum has a fixed
 * order, so results are deterministic, and no atomics are used. The one
 * long sum, over the HW positions of a channel, is a block reduction.
 *
 * What this is not: fast. The layers are a small part of a step; a fused
 * version belongs in a scratch folder until it wins a benchmark. */
#include "gpu_impl.h" /* defines: struct mfr_gpu, ld/st/acc, MFR_FOR, mfr_grid */

#include <assert.h>

/* ---- device helpers ---- */

/* The reference's sigmoid: two forms so that expf never overflows. */
__device__ static inline float sigm(float a)
{
	if (a >= 0.f)
		return 1.f / (1.f + expf(-a));
	float e = expf(a);
	return e / (1.f + e);
}

/* Index into att (N,R*C) of radix r of channel c in sample n: rSoftMax
 * views fc2's output as (K, R, Cg), so channel c = k*Cg + j of radix r is at
 * k*R*Cg + r*Cg + j (the reference's att_index). */
__device__ static inline size_t att_at(size_t n, int r, int c, int C, int R, int Cg)
{
	return n * (size_t)R * C + (size_t)(c / Cg) * R * Cg + (size_t)r * Cg + (size_t)(c % Cg);
}

/* ---- kernels ---- */

/* Column sums over the HW positions of each sample of an NHWC tensor:
 *   out[n*Q + q] = (1/div) * sum_i sum_{r<nr} a[(n*HW+i)*lda + q + r*rstride]
 *                                          * (b ? b[(n*HW+i)*ldb + q % ldb] : 1)
 * (a, b of type t). A block is CS_X columns by blockDim.y (a power of two,
 * at most CS_Y) row strides: threadIdx.x walks adjacent channels (coalesced),
 * threadIdx.y every blockDim.y-th position; the partial sums are then added
 * as a tree in shared memory. blockIdx.y walks the samples. */
#define CS_X 32
#define CS_Y 8
__global__ static void k_colsum(float *out, const void *a, int lda, int nr, int rstride, const void *b, int ldb,
				int N, int HW, int Q, float div, int t)
{
	__shared__ float sh[CS_Y][CS_X + 1];
	int tx = threadIdx.x, ty = threadIdx.y;
	int q = blockIdx.x * CS_X + tx;
	for (int n = blockIdx.y; n < N; n += gridDim.y) { /* n is the same for the whole block */
		float s = 0.f;
		if (q < Q)
			for (int i = ty; i < HW; i += blockDim.y) {
				size_t row = (size_t)n * HW + i;
				float v = 0.f;
				for (int r = 0; r < nr; r++)
					v += ld(a, row * lda + q + (size_t)r * rstride, t);
				if (b)
					v *= ld(b, row * ldb + q % ldb, t);
				s += v;
			}
		sh[ty][tx] = s;
		__syncthreads();
		for (int h = blockDim.y / 2; h > 0; h >>= 1) {
			if (ty < h)
				sh[ty][tx] += sh[ty + h][tx];
			__syncthreads();
		}
		if (ty == 0 && q < Q)
			out[(size_t)n * Q + q] = sh[0][tx] / div;
		__syncthreads(); /* sh is rewritten for the next sample */
	}
}

/* A grouped fully connected layer on N rows, one thread per output:
 *   out[n*O + o] = f(b[o] + sum_{i<In} W[o*In + i] * g(in[n*ldin + (o/opg)*In + i]))
 * where output o belongs to group o/opg, which reads In inputs (ungrouped:
 * opg = O, In = ldin), g is relu when relu_in and f the sigmoid when
 * sigm_out. */
__global__ static void k_fc(float *out, const float *in, int ldin, const float *W, const float *b, int N, int O,
			    int In, int opg, int relu_in, int sigm_out)
{
	MFR_FOR(idx, (size_t)N * O) {
		size_t n = idx / O;
		int o = (int)(idx % O);
		const float *x = in + n * ldin + (size_t)(o / opg) * In, *w = W + (size_t)o * In;
		float s = b[o];
		for (int i = 0; i < In; i++) {
			float v = x[i];
			if (relu_in)
				v = v > 0.f ? v : 0.f;
			s += w[i] * v;
		}
		out[idx] = sigm_out ? sigm(s) : s;
	}
}

/* Weight and bias gradients of k_fc, given gr = d(pre-activation output)
 * (N,O): dW[o*In + i] += sum_n gr[n,o] * g(in[n, (o/opg)*In + i]) and
 * db[o] += sum_n gr[n,o] (db may be NULL). One thread per weight, looping
 * over the rows in order. */
__global__ static void k_fc_dw(float *dW, float *db, const float *gr, const float *in, int ldin, int N, int O,
			       int In, int opg, int relu_in)
{
	MFR_FOR(idx, (size_t)O * In) {
		int o = (int)(idx / In), i = (int)(idx % In);
		size_t col = (size_t)(o / opg) * In + i;
		float s = 0.f, sb = 0.f;
		for (int n = 0; n < N; n++) {
			float v = in[(size_t)n * ldin + col], gv = gr[(size_t)n * O + o];
			if (relu_in)
				v = v > 0.f ? v : 0.f;
			s += gv * v;
			sb += gv;
		}
		dW[idx] += s;
		if (i == 0 && db)
			db[o] += sb;
	}
}

/* Input gradient of k_fc (=): din[n*ldin + c] = sum over the outputs o of
 * c's group k = c/In of W[o*In + c%In] * gr[n,o], set to 0 where mask
 * (N,ldin) is not > 0 (the relu that follows the input in the forward; mask
 * may be NULL). */
__global__ static void k_fc_din(float *din, const float *gr, const float *W, const float *mask, int N, int O,
				int In, int opg, int ldin)
{
	MFR_FOR(idx, (size_t)N * ldin) {
		size_t n = idx / ldin;
		int c = (int)(idx % ldin), k = c / In, i = c % In;
		float s = 0.f;
		for (int o = k * opg; o < (k + 1) * opg; o++)
			s += W[(size_t)o * In + i] * gr[n * O + o];
		if (mask && !(mask[idx] > 0.f))
			s = 0.f;
		din[idx] = s;
	}
}

/* SE: out (N,HW,C) = x * scale[n,c]. */
__global__ static void k_se_scale(void *out, const void *x, const float *scale, int N, int C, int HW, int t)
{
	size_t plane = (size_t)HW * C;
	MFR_FOR(idx, (size_t)N * plane) {
		size_t n = idx / plane, c = idx % C;
		st(out, idx, t, ld(x, idx, t) * scale[n * C + c]);
	}
}

/* SE: d(pre-sigmoid) in place from ds = sum_hw dout*x: da = ds * s (1-s). */
__global__ static void k_sigmoid_grad(float *da, const float *s, size_t n)
{
	MFR_FOR(i, n)
		da[i] = da[i] * s[i] * (1.f - s[i]);
}

/* SE: dx (N,HW,C) += dout * scale[n,c] + dp[n,c] / HW (dp: d pooled). */
__global__ static void k_se_dx(void *dx, const void *dout, const float *scale, const float *dp, int N, int C,
			       int HW, int t)
{
	size_t plane = (size_t)HW * C;
	MFR_FOR(idx, (size_t)N * plane) {
		size_t nc = idx / plane * C + idx % C;
		acc(dx, idx, t, ld(dout, idx, t) * scale[nc] + dp[nc] / (float)HW);
	}
}

/* Split attention's inner batch norm and relu on t (N,I), one thread per
 * channel looping over the N rows, as mfr_batchnorm_forward_ref with HW = 1:
 * training uses the batch mean and biased variance and updates the running
 * statistics (momentum, unbiased variance); inference uses the running
 * statistics. Writes mean, invstd (I) and z = relu(bn(t)) (N,I). */
__global__ static void k_splat_bn(float *z, float *mean, float *invstd, float *rmean, float *rvar, const float *t,
				  const float *gamma, const float *beta, int N, int I, int training, float eps,
				  float momentum)
{
	MFR_FOR(j, (size_t)I) {
		float mu, istd;
		if (training) {
			float s = 0.f, ss = 0.f;
			for (int n = 0; n < N; n++)
				s += t[(size_t)n * I + j];
			mu = s / (float)N;
			for (int n = 0; n < N; n++) {
				float d = t[(size_t)n * I + j] - mu;
				ss += d * d;
			}
			float var = ss / (float)N;
			istd = 1.f / sqrtf(var + eps);
			rmean[j] = (1.f - momentum) * rmean[j] + momentum * mu;
			rvar[j] = (1.f - momentum) * rvar[j] + momentum * var * ((float)N / (float)(N - 1));
		} else {
			mu = rmean[j];
			istd = 1.f / sqrtf(rvar[j] + eps);
		}
		mean[j] = mu;
		invstd[j] = istd;
		float gg = gamma[j] * istd, bb = beta[j];
		for (int n = 0; n < N; n++) {
			float y = gg * (t[(size_t)n * I + j] - mu) + bb;
			z[(size_t)n * I + j] = y > 0.f ? y : 0.f;
		}
	}
}

/* Backward of k_splat_bn's batch norm (dz already masked by the relu), as
 * mfr_batchnorm_backward_ref: dgamma, dbeta (I) +=, dt (N,I) =. */
__global__ static void k_splat_bn_bwd(float *dt, float *dgamma, float *dbeta, const float *dz, const float *t,
				      const float *gamma, const float *mean, const float *invstd, int N, int I,
				      int training)
{
	MFR_FOR(j, (size_t)I) {
		float mu = mean[j], istd = invstd[j], sdy = 0.f, sdyx = 0.f;
		for (int n = 0; n < N; n++) {
			size_t e = (size_t)n * I + j;
			sdy += dz[e];
			sdyx += dz[e] * (t[e] - mu) * istd;
		}
		dbeta[j] += sdy;
		dgamma[j] += sdyx;
		float gg = gamma[j] * istd;
		float mdy = training ? sdy / (float)N : 0.f, mdyx = training ? sdyx / (float)N : 0.f;
		for (int n = 0; n < N; n++) {
			size_t e = (size_t)n * I + j;
			dt[e] = gg * (dz[e] - mdy - (t[e] - mu) * istd * mdyx);
		}
	}
}

/* rSoftMax in place on att (N,R*C), one thread per (n, channel): softmax
 * over the R radices for R > 1, sigmoid for R == 1. */
__global__ static void k_rsoftmax(float *att, int N, int C, int R, int Cg)
{
	MFR_FOR(idx, (size_t)N * C) {
		size_t n = idx / C;
		int c = (int)(idx % C);
		if (R == 1) {
			size_t a = att_at(n, 0, c, C, R, Cg);
			att[a] = sigm(att[a]);
			continue;
		}
		float mx = -INFINITY, sum = 0.f;
		for (int r = 0; r < R; r++)
			mx = fmaxf(mx, att[att_at(n, r, c, C, R, Cg)]);
		for (int r = 0; r < R; r++)
			sum += expf(att[att_at(n, r, c, C, R, Cg)] - mx);
		for (int r = 0; r < R; r++) {
			size_t a = att_at(n, r, c, C, R, Cg);
			att[a] = expf(att[a] - mx) / sum;
		}
	}
}

/* Backward of rSoftMax: ga (N,R*C) in u's channel order (r*C + c) holds
 * d att; da (N,R*C) in att's order gets d(fc2 output) (=). */
__global__ static void k_rsoftmax_bwd(float *da, const float *ga, const float *att, int N, int C, int R, int Cg)
{
	size_t RC = (size_t)R * C;
	MFR_FOR(idx, (size_t)N * C) {
		size_t n = idx / C;
		int c = (int)(idx % C);
		if (R == 1) {
			size_t a = att_at(n, 0, c, C, R, Cg);
			da[a] = ga[n * RC + c] * att[a] * (1.f - att[a]);
			continue;
		}
		float pg = 0.f;
		for (int r = 0; r < R; r++)
			pg += att[att_at(n, r, c, C, R, Cg)] * ga[n * RC + (size_t)r * C + c];
		for (int r = 0; r < R; r++) {
			size_t a = att_at(n, r, c, C, R, Cg);
			da[a] = att[a] * (ga[n * RC + (size_t)r * C + c] - pg);
		}
	}
}

/* out (N,HW,C) = sum_r att[radix r of c] * u (N,HW,R*C)[r*C + c]. */
__global__ static void k_splat_out(void *out, const void *u, const float *att, int N, int C, int R, int Cg, int HW,
				   int t)
{
	size_t RC = (size_t)R * C;
	MFR_FOR(idx, (size_t)N * HW * C) {
		size_t row = idx / C, n = row / HW;
		int c = (int)(idx % C);
		float s = 0.f;
		for (int r = 0; r < R; r++)
			s += att[att_at(n, r, c, C, R, Cg)] * ld(u, row * RC + (size_t)r * C + c, t);
		st(out, idx, t, s);
	}
}

/* du (N,HW,R*C) += att[radix r of c] * dout[c] + dgap[n,c] / HW: the
 * weighted sum's direct part and the pooling's (every split gets dgap/HW). */
__global__ static void k_splat_du(void *du, const void *dout, const float *att, const float *dgap, int N, int C,
				  int R, int Cg, int HW, int t)
{
	size_t RC = (size_t)R * C;
	MFR_FOR(idx, (size_t)N * HW * RC) {
		size_t row = idx / RC, n = row / HW, q = idx % RC;
		int r = (int)(q / C), c = (int)(q % C);
		float v = att[att_at(n, r, c, C, R, Cg)] * ld(dout, row * C + c, t) + dgap[n * C + c] / (float)HW;
		acc(du, idx, t, v);
	}
}

/* ---- launch helpers ---- */

static void colsum(mfr_gpu *g, float *out, const void *a, int lda, int nr, int rstride, const void *b, int ldb,
		   int N, int HW, int Q, float div, mfr_dtype t)
{
	dim3 grid((unsigned)((Q + CS_X - 1) / CS_X), (unsigned)(N < 65535 ? N : 65535)), block(CS_X, CS_Y);
	k_colsum<<<grid, block, 0, g->stream>>>(out, a, lda, nr, rstride, b, ldb, N, HW, Q, div, (int)t);
}

static void fc(mfr_gpu *g, float *out, const float *in, int ldin, const float *W, const float *b, int N, int O,
	       int In, int opg, int relu_in, int sigm_out)
{
	size_t n = (size_t)N * O;
	k_fc<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(out, in, ldin, W, b, N, O, In, opg, relu_in,
									  sigm_out);
}

/* dW, db += and din = of fc (see k_fc_dw, k_fc_din); din may be NULL. */
static void fc_backward(mfr_gpu *g, float *din, float *dW, float *db, const float *gr, const float *in, int ldin,
			const float *W, const float *mask, int N, int O, int In, int opg, int relu_in)
{
	size_t nw = (size_t)O * In, ni = (size_t)N * ldin;
	k_fc_dw<<<mfr_grid(g, nw, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(dW, db, gr, in, ldin, N, O, In, opg,
									       relu_in);
	if (din)
		k_fc_din<<<mfr_grid(g, ni, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(din, gr, W, mask, N, O, In,
											opg, ldin);
}

extern "C" {

/* ---- squeeze-excitation ---- */

void mfr_se_forward_cuda(void *out, float *pooled, float *hidden, float *scale, const void *x, const float *W1,
			 const float *b1, const float *W2, const float *b2, int N, int C, int Cr, int HW, mfr_dtype t,
			 mfr_gpu *g)
{
	assert(N > 0 && C > 0 && Cr > 0 && HW > 0);
	size_t n = (size_t)N * HW * C;
	colsum(g, pooled, x, C, 1, 0, NULL, 0, N, HW, C, (float)HW, t);
	mfr_gpu_launched(g, "se_forward: pool");
	fc(g, hidden, pooled, C, W1, b1, N, Cr, C, Cr, 0, 0);
	mfr_gpu_launched(g, "se_forward: fc1");
	fc(g, scale, hidden, Cr, W2, b2, N, C, Cr, C, 1, 1);
	mfr_gpu_launched(g, "se_forward: fc2");
	k_se_scale<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(out, x, scale, N, C, HW, (int)t);
	mfr_gpu_launched(g, "se_forward: scale");
}

int mfr_se_backward_cuda(void *dx, float *dW1, float *db1, float *dW2, float *db2, const void *dout, const void *x,
			 const float *W1, const float *W2, const float *pooled, const float *hidden,
			 const float *scale, int N, int C, int Cr, int HW, mfr_dtype t, mfr_gpu *g, mfr_error *e)
{
	assert(N > 0 && C > 0 && Cr > 0 && HW > 0);
	size_t nc = (size_t)N * C, ncr = (size_t)N * Cr, n = (size_t)N * HW * C;
	/* one scratch, carved: da (N,C) d pre-sigmoid, dh (N,Cr) d hidden,
	 * dp (N,C) d pooled */
	float *da = (float *)mfr_gpu_scratch(g, (2 * nc + ncr) * sizeof(float), e);
	if (!da)
		return -1;
	float *dh = da + nc, *dp = dh + ncr;
	colsum(g, da, dout, C, 1, 0, x, C, N, HW, C, 1.f, t);
	mfr_gpu_launched(g, "se_backward: dscale");
	k_sigmoid_grad<<<mfr_grid(g, nc, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(da, scale, nc);
	mfr_gpu_launched(g, "se_backward: sigmoid");
	fc_backward(g, dh, dW2, db2, da, hidden, Cr, W2, hidden, N, C, Cr, C, 1);
	mfr_gpu_launched(g, "se_backward: fc2");
	fc_backward(g, dp, dW1, db1, dh, pooled, C, W1, NULL, N, Cr, C, Cr, 0);
	mfr_gpu_launched(g, "se_backward: fc1");
	k_se_dx<<<mfr_grid(g, n, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(dx, dout, scale, dp, N, C, HW, (int)t);
	return mfr_gpu_check(g, "se_backward: dx", e);
}

/* ---- split attention ---- */

/* Offsets of the parts of the save block (the reference's splat_layout):
 * gap (N*C) | t (N*inter) | mean (inter) | invstd (inter) | z (N*inter) |
 * att (N*R*C). */
typedef struct {
	size_t gap, t, mean, invstd, z, att;
} splat_offsets;

static splat_offsets splat_layout(int N, int C, int inter)
{
	splat_offsets o;
	o.gap = 0;
	o.t = o.gap + (size_t)N * C;
	o.mean = o.t + (size_t)N * inter;
	o.invstd = o.mean + (size_t)inter;
	o.z = o.invstd + (size_t)inter;
	o.att = o.z + (size_t)N * inter;
	return o;
}

static int splat_shape_ok(int N, int C, int R, int K, int inter, int HW, int training, mfr_error *e)
{
	if (N <= 0 || C <= 0 || R <= 0 || K <= 0 || inter <= 0 || HW <= 0 || C % K || inter % K)
		return mfr_fail(e, "splat: bad shape N %d C %d R %d K %d inter %d HW %d", N, C, R, K, inter, HW);
	if (training && N < 2)
		return mfr_fail(e, "splat: training needs N > 1 for the batch variance (N %d)", N);
	return 0;
}

int mfr_splat_forward_cuda(void *out, float *save, float *running_mean, float *running_var, const void *u,
			   const float *W1, const float *b1, const float *gamma, const float *beta, const float *W2,
			   const float *b2, int N, int C, int R, int K, int inter, int HW, int training, double eps,
			   double momentum, mfr_dtype t, mfr_gpu *g, mfr_error *e)
{
	if (splat_shape_ok(N, C, R, K, inter, HW, training, e) < 0)
		return -1;
	int Cg = C / K, Ig = inter / K, RC = R * C;
	splat_offsets o = splat_layout(N, C, inter);
	size_t nc = (size_t)N * C, nout = (size_t)N * HW * C;
	/* gap: mean over HW of the sum of the R splits */
	colsum(g, save + o.gap, u, RC, R, C, NULL, 0, N, HW, C, (float)HW, t);
	mfr_gpu_launched(g, "splat_forward: gap");
	/* fc1: output j reads group j/Ig's Cg channels of gap */
	fc(g, save + o.t, save + o.gap, C, W1, b1, N, inter, Cg, Ig, 0, 0);
	mfr_gpu_launched(g, "splat_forward: fc1");
	k_splat_bn<<<mfr_grid(g, (size_t)inter, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(
		save + o.z, save + o.mean, save + o.invstd, running_mean, running_var, save + o.t, gamma, beta, N,
		inter, training, (float)eps, (float)momentum);
	mfr_gpu_launched(g, "splat_forward: bn");
	/* fc2: output o reads group o/(R*Cg)'s Ig values of z */
	fc(g, save + o.att, save + o.z, inter, W2, b2, N, RC, Ig, R * Cg, 0, 0);
	mfr_gpu_launched(g, "splat_forward: fc2");
	k_rsoftmax<<<mfr_grid(g, nc, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(save + o.att, N, C, R, Cg);
	mfr_gpu_launched(g, "splat_forward: rsoftmax");
	k_splat_out<<<mfr_grid(g, nout, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(out, u, save + o.att, N, C, R, Cg,
										    HW, (int)t);
	return mfr_gpu_check(g, "splat_forward: out", e);
}

int mfr_splat_backward_cuda(void *du, float *dW1, float *db1, float *dgamma, float *dbeta, float *dW2, float *db2,
			    const void *dout, const void *u, const float *W1, const float *gamma, const float *W2,
			    const float *save, int N, int C, int R, int K, int inter, int HW, int training,
			    mfr_dtype t, mfr_gpu *g, mfr_error *e)
{
	if (splat_shape_ok(N, C, R, K, inter, HW, training, e) < 0)
		return -1;
	int Cg = C / K, Ig = inter / K, RC = R * C;
	splat_offsets o = splat_layout(N, C, inter);
	size_t nrc = (size_t)N * RC, ni = (size_t)N * inter, nc = (size_t)N * C, ndu = (size_t)N * HW * RC;
	/* one scratch, carved: ga (N,R*C) d att in u's channel order, da
	 * (N,R*C) d fc2 output in att's order, dz (N,inter) d z masked by the
	 * relu, dt (N,inter) d fc1 output, dgap (N,C) */
	float *ga = (float *)mfr_gpu_scratch(g, (2 * nrc + 2 * ni + nc) * sizeof(float), e);
	if (!ga)
		return -1;
	float *da = ga + nrc, *dz = da + nrc, *dt = dz + ni, *dgap = dt + ni;
	/* weighted sum: d att[r, c] = sum over HW of dout[c] * u[r*C + c] */
	colsum(g, ga, u, RC, 1, 0, dout, C, N, HW, RC, 1.f, t);
	mfr_gpu_launched(g, "splat_backward: datt");
	k_rsoftmax_bwd<<<mfr_grid(g, nc, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(da, ga, save + o.att, N, C, R,
										      Cg);
	mfr_gpu_launched(g, "splat_backward: rsoftmax");
	/* fc2 (z is already relu'd; the relu's mask is z > 0, as the reference) */
	fc_backward(g, dz, dW2, db2, da, save + o.z, inter, W2, save + o.z, N, RC, Ig, R * Cg, 0);
	mfr_gpu_launched(g, "splat_backward: fc2");
	k_splat_bn_bwd<<<mfr_grid(g, (size_t)inter, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(
		dt, dgamma, dbeta, dz, save + o.t, gamma, save + o.mean, save + o.invstd, N, inter, training);
	mfr_gpu_launched(g, "splat_backward: bn");
	fc_backward(g, dgap, dW1, db1, dt, save + o.gap, C, W1, NULL, N, inter, Cg, Ig, 0);
	mfr_gpu_launched(g, "splat_backward: fc1");
	k_splat_du<<<mfr_grid(g, ndu, MFR_THREADS), MFR_THREADS, 0, g->stream>>>(du, dout, save + o.att, dgap, N, C,
										   R, Cg, HW, (int)t);
	return mfr_gpu_check(g, "splat_backward: du", e);
}

} /* extern "C" */
