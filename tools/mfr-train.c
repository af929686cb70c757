/* mfr-train — train a face-recognition backbone with a margin-softmax
 * classifier sharded across MPI ranks (distributed FC, Partial FC), or print
 * the per-rank memory plan. Runs alone as a world of one, or under
 * `mpirun -np N`. Option parsing only: the loop is common/train.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"   /* defines: mfr_getopt, mfr_die, mfr_parse_* */
#include "comm.h"  /* defines: mfr_comm_* */
#include "gpu.h"   /* defines: mfr_dtype_parse */
#include "train.h" /* defines: mfr_train_config, mfr_train_run, mfr_train_plan_* */

enum {
	O_PLAN = 256, O_CLASSES, O_EMB, O_RANKS, O_RATE, O_MARGIN, O_M1, O_M2, O_M3, O_SCALE, O_DROPOUT, O_MOMENTUM,
	O_WD, O_FC_WD, O_LR, O_WARMUP, O_EPOCHS, O_DECAY, O_DECAY_EPOCHS, O_GAMMA, O_POWER, O_CLIP, O_SEED, O_INIT,
	O_RESUME, O_CKPT, O_SAVE_EVERY, O_LOG, O_LOG_EVERY, O_MAX_STEPS, O_LOADER, O_PREFETCH, O_MEM, O_FC_MOM,
	O_MASK_RATIO, O_MASK_TEMPLATES, O_DEVICE, O_DTYPE, O_TF32, O_LOADER_ONLY, O_LOSS_SCALE, O_BUCKET
};

static const mfr_option opts[] = {
	{"arch", 'a', "ARCH", "backbone: a preset (r18 r34 r50 r100 r200 resnet50 se-resnet50 resnext50 resnest50) or .arch file (default r50)"},
	{"output", 'o', "MODEL", "write the trained backbone to MODEL (.mfrm, via MODEL.tmp)"},
	{"batch", 'b', "N", "images per rank and step, 1..65536 (default 64)"},
	{"threads", 'j', "N", "compute threads per rank, 0 = all cores (default 0)"},
	{"device", O_DEVICE, "DEV", "cpu, cuda (each rank the GPU of its local rank), cuda:N, or auto: GPUs when every rank has one (default: $MFR_DEVICE, else auto)"},
	{"dtype", O_DTYPE, "T", "GPU backbone arithmetic: fp16 with dynamic loss scaling (default), bf16 or fp32; the classifier is fp32"},
	{"tf32", O_TF32, NULL, "GPU: fp32 GEMMs (the classifier's, whatever --dtype) and fp32 convolutions on TF32 tensor cores"},
	{"loss-scale", O_LOSS_SCALE, "S", "GPU fp16: the first loss scale (default 65536, halved on overflow, doubled after 2000 clean steps)"},
	{"bucket-mb", O_BUCKET, "MB", "GPU ranks: gradient all-reduce buckets sent during backward, in MiB (default 25)"},
	{"margin", O_MARGIN, "KIND", "cosface (m3 = 0.4, default), arcface (m2 = 0.5) or combined (set --m1 --m2 --m3)"},
	{"m1", O_M1, "X", "combined margin cos(m1 theta + m2) - m3: the multiplicative angular margin (default 1)"},
	{"m2", O_M2, "X", "the additive angular margin (ArcFace 0.5)"},
	{"m3", O_M3, "X", "the additive cosine margin (CosFace 0.4)"},
	{"scale", O_SCALE, "S", "logit scale s (default 64)"},
	{"sample-rate", O_RATE, "R", "Partial FC: fraction of each rank's classes sampled per step, (0, 1] (default 1)"},
	{"fc-momentum", O_FC_MOM, "MODE", "sparse (default: unsampled rows untouched) or dense (insightface v2: momentum and decay on every row)"},
	{"dropout", O_DROPOUT, "P", "dropout before the embedding layer, 0..0.99 (default 0.4)"},
	{"lr", O_LR, "X", "learning rate per 256 images, scaled by the global batch (default 0.1)"},
	{"momentum", O_MOMENTUM, "X", "SGD momentum (default 0.9)"},
	{"wd", O_WD, "X", "weight decay of the backbone (default 1e-4)"},
	{"fc-wd", O_FC_WD, "X", "weight decay of the classifier (default: --wd)"},
	{"warmup", O_WARMUP, "EPOCHS", "linear warmup (default 0)"},
	{"epochs", O_EPOCHS, "E", "training length (default 17)"},
	{"decay", O_DECAY, "KIND", "step (default) or poly"},
	{"decay-epochs", O_DECAY_EPOCHS, "LIST", "step decay epochs (default 5,9,12,15)"},
	{"gamma", O_GAMMA, "X", "step decay factor (default 0.1)"},
	{"power", O_POWER, "X", "polynomial decay power (default 2)"},
	{"clip", O_CLIP, "NORM", "clip the backbone gradient's global norm (default off)"},
	{"seed", O_SEED, "S", "seed of initialisation, order, flips, dropout, sampling (default 1)"},
	{"init", O_INIT, "MODEL", "start the backbone from MODEL (fine-tuning)"},
	{"checkpoint", O_CKPT, "FILE", "write checkpoints to FILE (atomically): every --save-every steps and at the end"},
	{"save-every", O_SAVE_EVERY, "N", "steps between checkpoints (default: only at the end)"},
	{"resume", O_RESUME, "FILE", "continue from a checkpoint (any number of ranks)"},
	{"max-steps", O_MAX_STEPS, "N", "stop at global step N (the schedule still spans --epochs)"},
	{"log", O_LOG, "FILE", "append a TSV line every --log-every steps (rank 0)"},
	{"log-every", O_LOG_EVERY, "N", "steps between log lines (default 10)"},
	{"loader-threads", O_LOADER, "N", "JPEG-decoding threads per rank (default 2)"},
	{"prefetch", O_PREFETCH, "N", "batches prepared ahead (default 2)"},
	{"mem-limit", O_MEM, "SIZE", "refuse to start when the plan needs more per rank (e.g. 12G)"},
	{"mask-ratio", O_MASK_RATIO, "R", "online mask augmentation: each face in each epoch masked with probability R (paper: 0.15; default 0)"},
	{"mask-templates", O_MASK_TEMPLATES, "PATH", "with --mask-ratio: also user mask templates (as mfr-maskaug -t)"},
	{"plan", O_PLAN, NULL, "print the per-rank memory plan and exit"},
	{"loader-only", O_LOADER_ONLY, NULL, "time the loader alone (decode, flip, masks) for an epoch or --max-steps batches, and exit"},
	{"classes", O_CLASSES, "C", "number of classes (default: 1 + the largest label; --plan: required)"},
	{"embedding-size", O_EMB, "D", "--plan: embedding dimension (default: the architecture's)"},
	{"ranks", O_RANKS, "K", "--plan: number of ranks (default: this job's)"},
	{0},
};

static const mfr_tool tool = {
	"mfr-train",
	"[-a ARCH] -o MODEL [-b N] [options] FILE...\n"
	"--plan --classes C [--embedding-size D] [--batch N] [--ranks K] [--sample-rate R] [-a ARCH]\n"
	"--loader-only [-b N] [--loader-threads N] [--mask-ratio R] FILE...",
	"Train a backbone on labelled FACE streams (each with its .idx, built when missing) with a\n"
	"margin-softmax classifier sharded by class across MPI ranks (mpirun -np K mfr-train ...),\n"
	"on the CPU or one GPU per rank.",
	opts,
};

/* "12G", "1.5GiB", "800M", "4096": bytes. */
static double parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	double mul = 1;
	switch (*end) {
	case 'k': case 'K': mul = 1024.0, end++; break;
	case 'm': case 'M': mul = 1024.0 * 1024, end++; break;
	case 'g': case 'G': mul = 1024.0 * 1024 * 1024, end++; break;
	case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024, end++; break;
	}
	if (mul > 1 && (!strcmp(end, "iB") || !strcmp(end, "B")))
		end += strlen(end);
	if (end == s || *end || !(v > 0))
		mfr_usage_error("memory size not understood: '%s' (e.g. 12G, 800M)", s);
	return v * mul;
}

static int parse_epochs(const char *s, double *out)
{
	int n = 0;
	char buf[256];
	snprintf(buf, sizeof buf, "%s", s);
	for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
		if (n == MFR_MAX_DECAY_EPOCHS)
			mfr_usage_error("at most %d decay epochs", MFR_MAX_DECAY_EPOCHS);
		out[n] = mfr_parse_real(t, 0, 1e6, "decay epoch");
		if (n && out[n] <= out[n - 1])
			mfr_usage_error("decay epochs must increase: %s", s);
		n++;
	}
	return n;
}

int main(int argc, char **argv)
{
	mfr_error e;
	mfr_comm *comm = mfr_comm_init(&argc, &argv, &e);
	if (!comm) {
		fprintf(stderr, "mfr-train: %s\n", e.msg);
		return 1;
	}
	mfr_train_config c;
	mfr_train_defaults(&c);
	int plan = 0, ranks = 0, emb = 0, fc_wd_set = 0, margin_set = 0, mset = 0, ch;
	while ((ch = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (ch) {
		case 'a': c.arch = optarg; break;
		case 'o': c.output = optarg; break;
		case 'b': c.batch = (int)mfr_parse_int(optarg, 1, 65536, "batch size"); break;
		case 'j': c.threads = (int)mfr_parse_int(optarg, 0, 1024, "thread count"); break;
		case O_MARGIN:
			margin_set = 1;
			if (!strcmp(optarg, "cosface"))
				c.margin.m1 = 1, c.margin.m2 = 0, c.margin.m3 = 0.4;
			else if (!strcmp(optarg, "arcface"))
				c.margin.m1 = 1, c.margin.m2 = 0.5, c.margin.m3 = 0;
			else if (!strcmp(optarg, "combined"))
				c.margin.m1 = 1, c.margin.m2 = 0.3, c.margin.m3 = 0.2; /* insightface's combined example */
			else
				mfr_usage_error("--margin must be cosface, arcface or combined, not '%s'", optarg);
			break;
		case O_M1: c.margin.m1 = mfr_parse_real(optarg, 0.1, 10, "m1"), mset = 1; break;
		case O_M2: c.margin.m2 = mfr_parse_real(optarg, 0, 3.14, "m2"), mset = 1; break;
		case O_M3: c.margin.m3 = mfr_parse_real(optarg, 0, 2, "m3"), mset = 1; break;
		case O_SCALE: c.margin.s = mfr_parse_real(optarg, 1, 1024, "scale"); break;
		case O_RATE: c.sample_rate = mfr_parse_real(optarg, 1e-6, 1, "sample rate"); break;
		case O_FC_MOM:
			if (strcmp(optarg, "sparse") && strcmp(optarg, "dense"))
				mfr_usage_error("--fc-momentum must be sparse or dense, not '%s'", optarg);
			c.sparse_momentum = !strcmp(optarg, "sparse");
			break;
		case O_DROPOUT: c.dropout = mfr_parse_real(optarg, 0, 0.99, "dropout"); break;
		case O_LR: c.lr = mfr_parse_real(optarg, 0, 100, "learning rate"); break;
		case O_MOMENTUM: c.momentum = mfr_parse_real(optarg, 0, 0.9999, "momentum"); break;
		case O_WD: c.wd = mfr_parse_real(optarg, 0, 1, "weight decay"); break;
		case O_FC_WD: c.fc_wd = mfr_parse_real(optarg, 0, 1, "classifier weight decay"), fc_wd_set = 1; break;
		case O_WARMUP: c.warmup = mfr_parse_real(optarg, 0, 1e6, "warmup epochs"); break;
		case O_EPOCHS: c.epochs = mfr_parse_real(optarg, 1e-6, 1e6, "epochs"); break;
		case O_DECAY:
			if (strcmp(optarg, "step") && strcmp(optarg, "poly"))
				mfr_usage_error("--decay must be step or poly, not '%s'", optarg);
			c.decay = !strcmp(optarg, "poly") ? MFR_DECAY_POLY : MFR_DECAY_STEP;
			break;
		case O_DECAY_EPOCHS: c.ndecay = parse_epochs(optarg, c.decay_epochs); break;
		case O_GAMMA: c.gamma = mfr_parse_real(optarg, 0, 1, "gamma"); break;
		case O_POWER: c.power = mfr_parse_real(optarg, 0, 100, "power"); break;
		case O_CLIP: c.clip = mfr_parse_real(optarg, 0, 1e9, "clip norm"); break;
		case O_SEED: c.seed = (uint64_t)mfr_parse_int(optarg, 0, (1ll << 62), "seed"); break;
		case O_INIT: c.init = optarg; break;
		case O_CKPT: c.checkpoint = optarg; break;
		case O_SAVE_EVERY: c.save_every = mfr_parse_int(optarg, 1, 1ll << 40, "steps between checkpoints"); break;
		case O_RESUME: c.resume = optarg; break;
		case O_MAX_STEPS: c.max_steps = mfr_parse_int(optarg, 1, 1ll << 40, "max steps"); break;
		case O_LOG: c.log = optarg; break;
		case O_LOG_EVERY: c.log_every = (int)mfr_parse_int(optarg, 1, 1 << 30, "steps between log lines"); break;
		case O_LOADER: c.loader_threads = (int)mfr_parse_int(optarg, 1, 256, "loader threads"); break;
		case O_PREFETCH: c.prefetch = (int)mfr_parse_int(optarg, 1, 64, "prefetch"); break;
		case O_MEM: c.mem_limit = parse_size(optarg); break;
		case O_MASK_RATIO: c.mask_ratio = mfr_parse_real(optarg, 0, 1, "mask ratio"); break;
		case O_MASK_TEMPLATES: c.mask_templates = optarg; break;
		case O_PLAN: plan = 1; break;
		case O_DEVICE: c.device = optarg; break;
		case O_DTYPE:
			if ((c.dtype = mfr_dtype_parse(optarg)) < 0)
				mfr_usage_error("--dtype: unknown type '%s' (fp16, bf16, fp32)", optarg);
			break;
		case O_TF32: c.tf32 = 1; break;
		case O_LOSS_SCALE: c.loss_scale = mfr_parse_real(optarg, 1, 16777216, "loss scale"); break;
		case O_BUCKET: c.bucket_mb = mfr_parse_real(optarg, 0.001, 65536, "bucket size"); break;
		case O_LOADER_ONLY: c.loader_only = 1; break;
		case O_CLASSES: c.classes = mfr_parse_int(optarg, 1, 1ll << 40, "classes"); break;
		case O_EMB: emb = (int)mfr_parse_int(optarg, 1, 65536, "embedding size"); break;
		case O_RANKS: ranks = (int)mfr_parse_int(optarg, 1, 1 << 20, "ranks"); break;
		}
	}
	if (margin_set && mset)
		mfr_usage_error("give --margin or --m1/--m2/--m3, not both");
	if (!fc_wd_set)
		c.fc_wd = c.wd;
	if (plan) {
		if (optind < argc)
			mfr_usage_error("--plan reads no data");
		if (!c.classes)
			mfr_usage_error("--plan needs --classes");
		if (!ranks)
			ranks = mfr_comm_size(comm);
		mfr_train_plan p;
		const char *arch = c.arch;
		int dim;
		if (mfr_train_arch_dim(arch, &dim, &e) < 0)
			mfr_die_error(&e);
		if (!emb)
			emb = dim;
		else if (emb != dim)
			arch = NULL; /* another embedding size: the classifier alone */
		if (mfr_train_plan_make(&p, c.classes, emb, c.batch, ranks, c.sample_rate, arch, c.prefetch, c.dtype, &e) < 0)
			mfr_die_error(&e);
		if (mfr_comm_rank(comm) == 0) {
			if (!arch)
				printf("(the backbone %s does not embed in %d dimensions: classifier only)\n", c.arch, emb);
			mfr_train_plan_print(&p, stdout, c.classes, emb, c.batch, ranks, c.sample_rate, arch);
			if (c.mem_limit > 0 && p.total > c.mem_limit)
				printf("over --mem-limit (%.3f GiB): mfr-train would refuse to start\n", c.mem_limit / 1073741824.0);
		}
		mfr_comm_finish(comm);
		return mfr_close_stdout(0);
	}
	if (optind >= argc)
		mfr_usage_error("no input: give FACE stream files (with labels)");
	if (!c.output && !c.checkpoint && !c.loader_only)
		mfr_usage_error("nothing would be written: give -o MODEL and/or --checkpoint FILE");
	c.inputs = (const char *const *)argv + optind;
	c.ninputs = argc - optind;
	if (mfr_train_run(&c, comm, &e) < 0) {
		if (mfr_comm_size(comm) > 1)
			fprintf(stderr, "mfr-train: rank %d: %s\n", mfr_comm_rank(comm), e.msg);
		else
			fprintf(stderr, "mfr-train: %s\n", e.msg);
		mfr_comm_abort(comm, 1);
	}
	mfr_comm_finish(comm);
	return 0;
}
