/* layers_elem.c — the reference element-wise and per-channel layers: batch
 * norm, PReLU, ReLU, sigmoid, add, concat, L2 normalisation,
 * squeeze-excitation and split attention. Contracts are in layers_elem.h.
 *
 * Written for clarity, not speed: one sample and one channel at a time, sums
 * in double whatever mfr_real is, no threads, no allocation. This file is
 * compiled twice (float and double, see real.h); everything here depends on
 * mfr_real or is static, so the two objects share no symbol.
 */
#include <assert.h>
#include <math.h>

#include "layers_elem.h" /* defines: mfr_*_ref, mfr_*_ref64 */

static double sigm(double a)
{
	/* the two forms keep exp() from overflowing for large |a| */
	if (a >= 0)
		return 1 / (1 + exp(-a));
	double e = exp(a);
	return e / (1 + e);
}

/* ---- batch norm ---- */

void MFR_REF(batchnorm_forward)(mfr_real *out, mfr_real *mean, mfr_real *invstd,
				mfr_real *running_mean, mfr_real *running_var,
				const mfr_real *in, const mfr_real *gamma, const mfr_real *beta,
				int N, int C, int HW, int training, double eps, double momentum)
{
	assert(N > 0 && C > 0 && HW > 0 && eps > 0);
	size_t M = (size_t)N * HW;
	assert(!training || M > 1); /* the unbiased variance needs two values */
	for (int c = 0; c < C; c++) {
		double mu, istd;
		if (training) {
			double s = 0, ss = 0;
			for (int n = 0; n < N; n++) {
				const mfr_real *x = in + ((size_t)n * C + c) * HW;
				for (int i = 0; i < HW; i++)
					s += x[i];
			}
			mu = s / (double)M;
			for (int n = 0; n < N; n++) {
				const mfr_real *x = in + ((size_t)n * C + c) * HW;
				for (int i = 0; i < HW; i++)
					ss += (x[i] - mu) * (x[i] - mu);
			}
			double var = ss / (double)M;
			istd = 1 / sqrt(var + eps);
			running_mean[c] = (mfr_real)((1 - momentum) * running_mean[c] + momentum * mu);
			running_var[c] = (mfr_real)((1 - momentum) * running_var[c] +
						    momentum * var * (double)M / (double)(M - 1));
		} else {
			mu = running_mean[c];
			istd = 1 / sqrt(running_var[c] + eps);
		}
		mean[c] = (mfr_real)mu;
		invstd[c] = (mfr_real)istd;
		double g = gamma[c] * istd, b = beta[c];
		for (int n = 0; n < N; n++) {
			const mfr_real *x = in + ((size_t)n * C + c) * HW;
			mfr_real *y = out + ((size_t)n * C + c) * HW;
			for (int i = 0; i < HW; i++)
				y[i] = (mfr_real)(g * (x[i] - mu) + b);
		}
	}
}

void MFR_REF(batchnorm_backward)(mfr_real *din, mfr_real *dgamma, mfr_real *dbeta,
				 const mfr_real *dout, const mfr_real *in, const mfr_real *gamma,
				 const mfr_real *mean, const mfr_real *invstd,
				 int N, int C, int HW, int training)
{
	assert(N > 0 && C > 0 && HW > 0);
	double M = (double)N * HW;
	for (int c = 0; c < C; c++) {
		double mu = mean[c], istd = invstd[c], sdy = 0, sdyx = 0;
		for (int n = 0; n < N; n++) {
			size_t o = ((size_t)n * C + c) * HW;
			for (int i = 0; i < HW; i++) {
				sdy += dout[o + i];
				sdyx += dout[o + i] * (in[o + i] - mu) * istd;
			}
		}
		dbeta[c] += (mfr_real)sdy;
		dgamma[c] += (mfr_real)sdyx;
		double g = gamma[c] * istd;
		/* training: mean and variance depend on every x of the channel,
		 * which adds the two batch terms */
		double mdy = training ? sdy / M : 0, mdyx = training ? sdyx / M : 0;
		for (int n = 0; n < N; n++) {
			size_t o = ((size_t)n * C + c) * HW;
			for (int i = 0; i < HW; i++) {
				double xhat = (in[o + i] - mu) * istd;
				din[o + i] += (mfr_real)(g * (dout[o + i] - mdy - xhat * mdyx));
			}
		}
	}
}

/* ---- PReLU, ReLU, sigmoid, add ---- */

void MFR_REF(prelu_forward)(mfr_real *out, const mfr_real *in, const mfr_real *slope, int N, int C, int HW)
{
	for (int n = 0; n < N; n++)
		for (int c = 0; c < C; c++) {
			size_t o = ((size_t)n * C + c) * HW;
			for (int i = 0; i < HW; i++)
				out[o + i] = in[o + i] > 0 ? in[o + i] : slope[c] * in[o + i];
		}
}

void MFR_REF(prelu_backward)(mfr_real *din, mfr_real *dslope, const mfr_real *dout, const mfr_real *in,
			     const mfr_real *slope, int N, int C, int HW)
{
	for (int c = 0; c < C; c++) {
		double ds = 0;
		for (int n = 0; n < N; n++) {
			size_t o = ((size_t)n * C + c) * HW;
			for (int i = 0; i < HW; i++) {
				if (in[o + i] > 0) {
					din[o + i] += dout[o + i];
				} else {
					din[o + i] += slope[c] * dout[o + i];
					ds += (double)dout[o + i] * in[o + i];
				}
			}
		}
		dslope[c] += (mfr_real)ds;
	}
}

void MFR_REF(relu_forward)(mfr_real *out, const mfr_real *in, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = in[i] > 0 ? in[i] : 0;
}

void MFR_REF(relu_backward)(mfr_real *din, const mfr_real *dout, const mfr_real *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (out[i] > 0)
			din[i] += dout[i];
}

void MFR_REF(sigmoid_forward)(mfr_real *out, const mfr_real *in, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (mfr_real)sigm(in[i]);
}

void MFR_REF(sigmoid_backward)(mfr_real *din, const mfr_real *dout, const mfr_real *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		din[i] += dout[i] * out[i] * (1 - out[i]);
}

void MFR_REF(add_forward)(mfr_real *out, const mfr_real *a, const mfr_real *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}

void MFR_REF(add_backward)(mfr_real *da, mfr_real *db, const mfr_real *dout, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		da[i] += dout[i];
		db[i] += dout[i];
	}
}

/* ---- concat ---- */

void MFR_REF(concat_forward)(mfr_real *out, const mfr_real *const *in, int k, const int *C, int N, int HW)
{
	int Ct = 0;
	for (int i = 0; i < k; i++)
		Ct += C[i];
	for (int n = 0; n < N; n++) {
		int c0 = 0;
		for (int i = 0; i < k; i++) {
			size_t len = (size_t)C[i] * HW;
			const mfr_real *src = in[i] + (size_t)n * len;
			mfr_real *dst = out + ((size_t)n * Ct + c0) * HW;
			for (size_t j = 0; j < len; j++)
				dst[j] = src[j];
			c0 += C[i];
		}
	}
}

void MFR_REF(concat_backward)(mfr_real *const *din, const mfr_real *dout, int k, const int *C, int N, int HW)
{
	int Ct = 0;
	for (int i = 0; i < k; i++)
		Ct += C[i];
	for (int n = 0; n < N; n++) {
		int c0 = 0;
		for (int i = 0; i < k; i++) {
			size_t len = (size_t)C[i] * HW;
			mfr_real *dst = din[i] + (size_t)n * len;
			const mfr_real *src = dout + ((size_t)n * Ct + c0) * HW;
			for (size_t j = 0; j < len; j++)
				dst[j] += src[j];
			c0 += C[i];
		}
	}
}

/* ---- L2 normalisation ---- */

void MFR_REF(l2norm_forward)(mfr_real *out, mfr_real *norm, const mfr_real *in, int N, int D, double eps)
{
	for (int n = 0; n < N; n++) {
		const mfr_real *x = in + (size_t)n * D;
		double ss = 0;
		for (int i = 0; i < D; i++)
			ss += (double)x[i] * x[i];
		double nr = sqrt(ss), den = nr > eps ? nr : eps;
		norm[n] = (mfr_real)nr;
		for (int i = 0; i < D; i++)
			out[(size_t)n * D + i] = (mfr_real)(x[i] / den);
	}
}

void MFR_REF(l2norm_backward)(mfr_real *din, const mfr_real *dout, const mfr_real *in, const mfr_real *norm,
			      int N, int D, double eps)
{
	for (int n = 0; n < N; n++) {
		const mfr_real *x = in + (size_t)n * D, *dy = dout + (size_t)n * D;
		mfr_real *dx = din + (size_t)n * D;
		double nr = norm[n];
		if (!(nr > eps)) { /* clamped: out = x/eps, a linear map */
			for (int i = 0; i < D; i++)
				dx[i] += (mfr_real)(dy[i] / eps);
			continue;
		}
		double ydy = 0;
		for (int i = 0; i < D; i++)
			ydy += x[i] / nr * dy[i];
		for (int i = 0; i < D; i++)
			dx[i] += (mfr_real)((dy[i] - x[i] / nr * ydy) / nr);
	}
}

/* ---- squeeze-excitation ---- */

void MFR_REF(se_forward)(mfr_real *out, mfr_real *pooled, mfr_real *hidden, mfr_real *scale,
			 const mfr_real *x, const mfr_real *W1, const mfr_real *b1, const mfr_real *W2,
			 const mfr_real *b2, int N, int C, int Cr, int HW)
{
	assert(N > 0 && C > 0 && Cr > 0 && HW > 0);
	for (int n = 0; n < N; n++) {
		const mfr_real *xn = x + (size_t)n * C * HW;
		mfr_real *p = pooled + (size_t)n * C, *h = hidden + (size_t)n * Cr, *s = scale + (size_t)n * C;
		for (int c = 0; c < C; c++) {
			double acc = 0;
			for (int i = 0; i < HW; i++)
				acc += xn[(size_t)c * HW + i];
			p[c] = (mfr_real)(acc / HW);
		}
		for (int j = 0; j < Cr; j++) {
			double acc = b1[j];
			for (int c = 0; c < C; c++)
				acc += (double)W1[(size_t)j * C + c] * p[c];
			h[j] = (mfr_real)acc;
		}
		for (int c = 0; c < C; c++) {
			double acc = b2[c];
			for (int j = 0; j < Cr; j++)
				acc += h[j] > 0 ? (double)W2[(size_t)c * Cr + j] * h[j] : 0;
			s[c] = (mfr_real)sigm(acc);
		}
		for (int c = 0; c < C; c++)
			for (int i = 0; i < HW; i++)
				out[((size_t)n * C + c) * HW + i] = xn[(size_t)c * HW + i] * s[c];
	}
}

void MFR_REF(se_backward)(mfr_real *dx, mfr_real *dW1, mfr_real *db1, mfr_real *dW2, mfr_real *db2,
			  mfr_real *work, const mfr_real *dout, const mfr_real *x, const mfr_real *W1,
			  const mfr_real *W2, const mfr_real *pooled, const mfr_real *hidden,
			  const mfr_real *scale, int N, int C, int Cr, int HW)
{
	mfr_real *da = work, *dh = work + C; /* per sample: d(pre-sigmoid) (C), d(hidden) (Cr) */
	for (int n = 0; n < N; n++) {
		size_t o = (size_t)n * C * HW;
		const mfr_real *p = pooled + (size_t)n * C, *h = hidden + (size_t)n * Cr, *s = scale + (size_t)n * C;
		for (int c = 0; c < C; c++) {
			double ds = 0;
			for (int i = 0; i < HW; i++)
				ds += (double)dout[o + (size_t)c * HW + i] * x[o + (size_t)c * HW + i];
			da[c] = (mfr_real)(ds * s[c] * (1 - s[c]));
			db2[c] += da[c];
		}
		for (int j = 0; j < Cr; j++) {
			double z = h[j] > 0 ? h[j] : 0, dz = 0;
			for (int c = 0; c < C; c++) {
				dW2[(size_t)c * Cr + j] += (mfr_real)(da[c] * z);
				dz += (double)W2[(size_t)c * Cr + j] * da[c];
			}
			dh[j] = h[j] > 0 ? (mfr_real)dz : 0;
			db1[j] += dh[j];
		}
		for (int c = 0; c < C; c++) {
			double dp = 0;
			for (int j = 0; j < Cr; j++) {
				dW1[(size_t)j * C + c] += dh[j] * p[c];
				dp += (double)W1[(size_t)j * C + c] * dh[j];
			}
			dp /= HW; /* pooling is a mean */
			for (int i = 0; i < HW; i++) {
				size_t e = o + (size_t)c * HW + i;
				dx[e] += (mfr_real)(dout[e] * s[c] + dp);
			}
		}
	}
}

/* ---- split attention ---- */

/* The layout of splat_forward's save block (see layers_elem.h). */
typedef struct {
	mfr_real *gap, *t, *mean, *invstd, *z, *att;
} splat_saved;

static splat_saved splat_layout(mfr_real *save, int N, int C, int R, int inter)
{
	splat_saved s;
	s.gap = save;
	s.t = s.gap + (size_t)N * C;
	s.mean = s.t + (size_t)N * inter;
	s.invstd = s.mean + inter;
	s.z = s.invstd + inter;
	s.att = s.z + (size_t)N * inter;
	(void)R; /* att, the last part, is N*R*C long */
	return s;
}

/* index into a/att (N,R*C) of radix r of channel c = k*Cg + j in sample n:
 * rSoftMax views fc2's output as (K, R, Cg) */
static size_t att_index(int n, int r, int c, int C, int R, int Cg)
{
	int k = c / Cg, j = c % Cg;
	return (size_t)n * R * C + (size_t)k * R * Cg + (size_t)r * Cg + j;
}

void MFR_REF(splat_forward)(mfr_real *out, mfr_real *save, mfr_real *running_mean, mfr_real *running_var,
			    const mfr_real *u, const mfr_real *W1, const mfr_real *b1, const mfr_real *gamma,
			    const mfr_real *beta, const mfr_real *W2, const mfr_real *b2,
			    int N, int C, int R, int K, int inter, int HW, int training, double eps,
			    double momentum)
{
	assert(N > 0 && C > 0 && R > 0 && K > 0 && inter > 0 && HW > 0);
	assert(C % K == 0 && inter % K == 0);
	int Cg = C / K, Ig = inter / K, RC = R * C;
	splat_saved s = splat_layout(save, N, C, R, inter);

	for (int n = 0; n < N; n++)
		for (int c = 0; c < C; c++) {
			double acc = 0;
			for (int r = 0; r < R; r++) {
				const mfr_real *x = u + ((size_t)n * RC + (size_t)r * C + c) * HW;
				for (int i = 0; i < HW; i++)
					acc += x[i];
			}
			s.gap[(size_t)n * C + c] = (mfr_real)(acc / HW);
		}
	for (int n = 0; n < N; n++) /* fc1: output j sees group j/Ig's Cg inputs */
		for (int j = 0; j < inter; j++) {
			int k = j / Ig;
			double acc = b1[j];
			for (int i = 0; i < Cg; i++)
				acc += (double)W1[(size_t)j * Cg + i] * s.gap[(size_t)n * C + k * Cg + i];
			s.t[(size_t)n * inter + j] = (mfr_real)acc;
		}
	MFR_REF(batchnorm_forward)(s.z, s.mean, s.invstd, running_mean, running_var, s.t, gamma, beta,
				   N, inter, 1, training, eps, momentum);
	MFR_REF(relu_forward)(s.z, s.z, (size_t)N * inter);
	for (int n = 0; n < N; n++) /* fc2: output o sees group o/(R*Cg)'s Ig inputs */
		for (int o = 0; o < RC; o++) {
			int k = o / (R * Cg);
			double acc = b2[o];
			for (int i = 0; i < Ig; i++)
				acc += (double)W2[(size_t)o * Ig + i] * s.z[(size_t)n * inter + k * Ig + i];
			s.att[(size_t)n * RC + o] = (mfr_real)acc;
		}
	for (int n = 0; n < N; n++) /* rSoftMax, in place */
		for (int c = 0; c < C; c++) {
			if (R == 1) {
				size_t a = att_index(n, 0, c, C, R, Cg);
				s.att[a] = (mfr_real)sigm(s.att[a]);
				continue;
			}
			double mx = -INFINITY, sum = 0;
			for (int r = 0; r < R; r++)
				mx = fmax(mx, s.att[att_index(n, r, c, C, R, Cg)]);
			for (int r = 0; r < R; r++)
				sum += exp(s.att[att_index(n, r, c, C, R, Cg)] - mx);
			for (int r = 0; r < R; r++) {
				size_t a = att_index(n, r, c, C, R, Cg);
				s.att[a] = (mfr_real)(exp(s.att[a] - mx) / sum);
			}
		}
	for (int n = 0; n < N; n++)
		for (int c = 0; c < C; c++) {
			mfr_real *y = out + ((size_t)n * C + c) * HW;
			for (int i = 0; i < HW; i++) {
				double acc = 0;
				for (int r = 0; r < R; r++)
					acc += (double)s.att[att_index(n, r, c, C, R, Cg)] *
					       u[((size_t)n * RC + (size_t)r * C + c) * HW + i];
				y[i] = (mfr_real)acc;
			}
		}
}

void MFR_REF(splat_backward)(mfr_real *du, mfr_real *dW1, mfr_real *db1, mfr_real *dgamma, mfr_real *dbeta,
			     mfr_real *dW2, mfr_real *db2, mfr_real *work, const mfr_real *dout,
			     const mfr_real *u, const mfr_real *W1, const mfr_real *gamma, const mfr_real *W2,
			     const mfr_real *save, int N, int C, int R, int K, int inter, int HW, int training)
{
	int Cg = C / K, Ig = inter / K, RC = R * C;
	/* the layout only hands out pointers; nothing in save is written */
	splat_saved s = splat_layout((mfr_real *)save, N, C, R, inter);
	mfr_real *da = work;                        /* d att, then d a (N,R*C) */
	mfr_real *dz = da + (size_t)N * RC;         /* d z, then d bn-out (N,inter) */
	mfr_real *dt = dz + (size_t)N * inter;      /* d t (N,inter) */
	mfr_real *dgap = dt + (size_t)N * inter;    /* d gap (N,C) */
	for (size_t i = 0; i < (size_t)N * inter; i++)
		dz[i] = dt[i] = 0;
	for (size_t i = 0; i < (size_t)N * C; i++)
		dgap[i] = 0;

	/* weighted sum: d att and the direct part of du */
	for (int n = 0; n < N; n++)
		for (int c = 0; c < C; c++)
			for (int r = 0; r < R; r++) {
				size_t a = att_index(n, r, c, C, R, Cg);
				const mfr_real *dy = dout + ((size_t)n * C + c) * HW;
				size_t o = ((size_t)n * RC + (size_t)r * C + c) * HW;
				double acc = 0;
				for (int i = 0; i < HW; i++) {
					acc += (double)dy[i] * u[o + i];
					du[o + i] += s.att[a] * dy[i];
				}
				da[a] = (mfr_real)acc;
			}
	/* rSoftMax backward, in place: softmax da_r = p_r (g_r - sum p g) */
	for (int n = 0; n < N; n++)
		for (int c = 0; c < C; c++) {
			if (R == 1) {
				size_t a = att_index(n, 0, c, C, R, Cg);
				da[a] = da[a] * s.att[a] * (1 - s.att[a]);
				continue;
			}
			double pg = 0;
			for (int r = 0; r < R; r++) {
				size_t a = att_index(n, r, c, C, R, Cg);
				pg += (double)s.att[a] * da[a];
			}
			for (int r = 0; r < R; r++) {
				size_t a = att_index(n, r, c, C, R, Cg);
				da[a] = (mfr_real)(s.att[a] * (da[a] - pg));
			}
		}
	/* fc2 */
	for (int n = 0; n < N; n++)
		for (int o = 0; o < RC; o++) {
			int k = o / (R * Cg);
			mfr_real g = da[(size_t)n * RC + o];
			db2[o] += g;
			for (int i = 0; i < Ig; i++) {
				size_t zi = (size_t)n * inter + k * Ig + i;
				dW2[(size_t)o * Ig + i] += g * s.z[zi];
				dz[zi] += W2[(size_t)o * Ig + i] * g;
			}
		}
	/* relu (z > 0 exactly when the bn output is), then bn into dt */
	for (size_t i = 0; i < (size_t)N * inter; i++)
		if (!(s.z[i] > 0))
			dz[i] = 0;
	MFR_REF(batchnorm_backward)(dt, dgamma, dbeta, dz, s.t, gamma, s.mean, s.invstd, N, inter, 1, training);
	/* fc1 */
	for (int n = 0; n < N; n++)
		for (int j = 0; j < inter; j++) {
			int k = j / Ig;
			mfr_real g = dt[(size_t)n * inter + j];
			db1[j] += g;
			for (int i = 0; i < Cg; i++) {
				size_t gi = (size_t)n * C + k * Cg + i;
				dW1[(size_t)j * Cg + i] += g * s.gap[gi];
				dgap[gi] += W1[(size_t)j * Cg + i] * g;
			}
		}
	/* gap: every split of channel c gets dgap/HW at every position */
	for (int n = 0; n < N; n++)
		for (int r = 0; r < R; r++)
			for (int c = 0; c < C; c++) {
				mfr_real g = dgap[(size_t)n * C + c] / HW;
				size_t o = ((size_t)n * RC + (size_t)r * C + c) * HW;
				for (int i = 0; i < HW; i++)
					du[o + i] += g;
			}
}
