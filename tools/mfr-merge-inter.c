/* mfr-merge-inter — merge the classes of an EMBEDDING stream whose centres
 * are nearly the same direction (one identity split over several labels),
 * and write the stream again with compact new labels, plus the merged pairs
 * and the label map as TSV.
 *
 * Two passes over the input (centres, then the relabelled copy); between
 * them the exact search of every centre pair above the threshold
 * (mfr_pair_search: blocked GEMM, per-centre top-k; on a GPU the tiles come
 * from cuBLAS, gsim.h) and a capped union-find, processing edges strongest
 * first (common/clean.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean.h"  /* defines: mfr_passes_*, mfr_centres_build, mfr_pair_search, mfr_uf */
#include "cli.h"    /* defines: mfr_getopt, mfr_parse_*, mfr_die*, mfr_text_open */
#include "gemm.h"   /* defines: mfr_gemm_backend */
#include "gsim.h"   /* defines: mfr_gsim_* (the GPU's tiles; with CUDA only) */
#include "infer.h"  /* defines: mfr_device_select */
#include "qgemm.h"  /* defines: mfr_qgemm_backend */
#include "record.h" /* defines: mfr_record_ids */
#include "stream.h" /* defines: mfr_writer_* */

enum { O_PAIRS = 256, O_MAP, O_MUTUAL, O_MAX, O_BLOCK, O_SEARCH, O_DEVICE };

/* --search gpu: fp32 tiles from the GPU (mfr_pair_search_with) */
#define SEARCH_GPU (-1)

static const mfr_option opts[] = {
	{"threshold", 't', "T", "merge classes whose centres have cosine similarity >= T (-1..1; required)"},
	{"top-k", 'k', "K", "consider each centre's K most similar centres above T (1..1024, default 10)"},
	{"mutual", O_MUTUAL, NULL, "merge a pair only when each is in the other's top K"},
	{"max-merge", O_MAX, "N", "refuse a merge that would make a group of more than N classes\n"
				  "(0: no cap; default 16)"},
	{"threads", 'j', "N", "threads for the search, 0 = all cores (default 0); the output does not depend on N"},
	{"block", O_BLOCK, "B", "centres per GEMM tile side (16..65536, default 4096; int8: at most 512)"},
	{"search", O_SEARCH, "M", "first pass of the search: auto, int8, fp32 or gpu (default auto: gpu when\n"
				  "--device is a GPU, else int8 where the CPU has VNNI); the output does not\n"
				  "depend on M"},
	{"device", O_DEVICE, "DEV", "the GPU of --search gpu and auto: cuda, cuda:N, auto (the first GPU if there\n"
				    "is one) or cpu (default: $MFR_DEVICE, else auto)"},
	{"pairs", O_PAIRS, "FILE", "write the candidate pairs as TSV: label_a, label_b, similarity, decision"},
	{"map", O_MAP, "FILE", "write the label map as TSV: old_label, new_label, images"},
	{"output", 'o', "FILE", "write to FILE (via FILE.tmp, renamed on success) instead of stdout"},
	{0},
};

static const mfr_tool tool = {
	"mfr-merge-inter",
	"-t T [-k K] [--mutual] [--max-merge N] [-j N] [--block B] [--search M] [--device DEV]\n"
	"[--pairs FILE] [--map FILE] [-o FILE] [FILE...]",
	"Merge the classes of EMBEDDING streams whose centres (mean of the L2-normalised embeddings)\n"
	"are at cosine T or closer, and write the records again with compact new labels 0..G-1,\n"
	"numbered in the order of each group's smallest old label. No FILE, or -, reads stdin\n"
	"(spooled to $TMPDIR: the input is read twice).",
	opts,
};

int main(int argc, char **argv)
{
	const char *out = NULL, *pairs = NULL, *map = NULL, *device = NULL;
	double threshold = 0;
	int have_t = 0, k = 10, mutual = 0, threads = 0, method = MFR_SEARCH_AUTO, c;
	uint64_t cap = 16;
	size_t block = 4096;
	while ((c = mfr_getopt(&tool, argc, argv)) != -1) {
		switch (c) {
		case 't':
			threshold = mfr_parse_real(optarg, -1, 1, "threshold");
			have_t = 1;
			break;
		case 'k': k = (int)mfr_parse_int(optarg, 1, 1024, "top-k"); break;
		case O_MUTUAL: mutual = 1; break;
		case O_MAX: cap = (uint64_t)mfr_parse_int(optarg, 0, INT32_MAX, "group size cap"); break;
		case 'j': threads = (int)mfr_parse_int(optarg, 0, 256, "thread count"); break;
		case O_BLOCK: block = (size_t)mfr_parse_int(optarg, 16, 65536, "block size"); break;
		case O_SEARCH:
			if (strcmp(optarg, "auto") == 0)
				method = MFR_SEARCH_AUTO;
			else if (strcmp(optarg, "int8") == 0)
				method = MFR_SEARCH_INT8;
			else if (strcmp(optarg, "fp32") == 0)
				method = MFR_SEARCH_FP32;
			else if (strcmp(optarg, "gpu") == 0)
				method = SEARCH_GPU;
			else
				mfr_usage_error("--search wants auto, int8, fp32 or gpu, not '%s'", optarg);
			break;
		case O_DEVICE: device = optarg; break;
		case O_PAIRS: pairs = optarg; break;
		case O_MAP: map = optarg; break;
		case 'o': out = optarg; break;
		}
	}
	if (!have_t)
		mfr_usage_error("no threshold: give -t T");
	if (cap == 1)
		mfr_usage_error("--max-merge 1 would forbid every merge; use 0 for no cap or at least 2");
	double t0 = mfr_now();
	mfr_error e;
	/* auto and gpu ask where: a GPU runs the search's tiles (the same
	 * result: every candidate is rescored on the CPU); int8 and fp32 stay
	 * on the CPU whatever the device */
	int dev = 0, on_gpu = 0;
	if (method == MFR_SEARCH_AUTO || method == SEARCH_GPU) {
		if ((on_gpu = mfr_device_select(device, &dev, &e)) < 0)
			mfr_die_error(&e);
		if (method == SEARCH_GPU && !on_gpu) {
			if (!strcmp(device ? device : mfr_device_default(), "cpu"))
				mfr_usage_error("--search gpu runs on a GPU, not on --device cpu");
			char why[128];
			mfr_gpu_count(why, sizeof why);
			mfr_die("--search gpu: no GPU: %s", why);
		}
	}
#ifndef MFR_HAVE_CUDA
	if (on_gpu) /* mfr_device_select finds no GPU without CUDA */
		mfr_die("built without CUDA");
#endif
	mfr_passes p;
	mfr_passes_init(&p, (const char *const *)argv + optind, argc - optind);
	mfr_centres cs;
	if (mfr_centres_build(&p, &cs, &e) < 0)
		mfr_die_error(&e);

	double ts = mfr_now();
	mfr_topk tk;
	char backend[300];
	snprintf(backend, sizeof backend, "%s", mfr_gemm_backend());
	int rc;
#ifdef MFR_HAVE_CUDA
	if (on_gpu) {
		mfr_gpu *gpu = mfr_gpu_open(dev, &e);
		mfr_gsim *gs = gpu ? mfr_gsim_new(gpu, 0, 0, &e) : NULL;
		if (!gs)
			mfr_die_error(&e);
		snprintf(backend, sizeof backend, "GPU %d %s, cuBLAS", dev, mfr_gpu_name(gpu));
		rc = mfr_pair_search_with(cs.c, cs.n, cs.dim, (float)threshold, k, block, threads, mfr_gsim_block,
					  mfr_gsim_bind, gs, &tk, &e);
		mfr_gsim_free(gs);
		mfr_gpu_close(gpu);
	} else
#endif
		rc = mfr_pair_search(cs.c, cs.n, cs.dim, (float)threshold, k, block, threads,
				     method == SEARCH_GPU ? MFR_SEARCH_AUTO : method, &tk, &e);
	if (rc < 0)
		mfr_die_error(&e);
	ts = mfr_now() - ts;
	mfr_edge *edges;
	size_t n_edges;
	mfr_uf u;
	int32_t *newlab = malloc((cs.n + 1) * sizeof *newlab);
	if (!newlab || mfr_topk_edges(&tk, mutual, &edges, &n_edges, &e) < 0 || mfr_uf_init(&u, cs.n, &e) < 0)
		mfr_die("out of memory for %zu classes", cs.n);
	mfr_merge_classes(&u, edges, n_edges, cap);
	size_t groups = mfr_uf_labels(&u, newlab);

	/* second pass: the same records with the new labels */
	if (mfr_passes_begin(&p, 1, &e) < 0)
		mfr_die_error(&e);
	mfr_writer *w = mfr_writer_open(out, &p.schema, "mfr-merge-inter", argc, argv, 0, &e);
	if (!w)
		mfr_die_error(&e);
	uint8_t *buf = NULL;
	size_t room = 0;
	uint64_t relabelled = 0;
	mfr_record rec;
	int got;
	while ((got = mfr_passes_next(&p, &rec, &e)) == 1) {
		if (rec.type == MFR_REC_META) {
			if (mfr_writer_put(w, MFR_REC_META, rec.data, rec.size, &e) < 0)
				mfr_die_error(&e);
			continue;
		}
		if (rec.size > room && !(buf = realloc(buf, room = rec.size)))
			mfr_die("out of memory");
		memcpy(buf, rec.data, rec.size);
		int32_t label = (int32_t)mfr_get32(buf + 8);
		int64_t cls = mfr_centres_find(&cs, label);
		if (label >= 0 && cls < 0)
			mfr_die("'%s': the input changed between passes (label %d is new)", rec.path, label);
		if (cls >= 0) {
			mfr_put32(buf + 8, (uint32_t)newlab[cls]);
			relabelled += newlab[cls] != label;
		}
		if (mfr_writer_put(w, MFR_REC_DATA, buf, rec.size, &e) < 0)
			mfr_die_error(&e);
	}
	if (got < 0)
		mfr_die_error(&e);
	uint64_t records = p.records;
	mfr_passes_close(&p);

	char *tmp_pairs = NULL, *tmp_map = NULL;
	FILE *fp = pairs ? mfr_text_open(pairs, &tmp_pairs) : NULL;
	FILE *fm = map ? mfr_text_open(map, &tmp_map) : NULL;
	size_t fate[3] = {0};
	if (fp)
		fputs("label_a\tlabel_b\tsimilarity\tdecision\n", fp);
	for (size_t q = 0; q < n_edges; q++) {
		fate[edges[q].fate]++;
		if (fp)
			fprintf(fp, "%d\t%d\t%.6f\t%s\n", cs.labels[edges[q].a], cs.labels[edges[q].b], edges[q].sim,
				mfr_edge_fate(edges[q].fate));
	}
	if (fm) {
		fputs("old_label\tnew_label\timages\n", fm);
		for (size_t q = 0; q < cs.n; q++)
			fprintf(fm, "%d\t%d\t%llu\n", cs.labels[q], newlab[q], (unsigned long long)cs.count[q]);
	}
	if (mfr_writer_close(w, &e) < 0)
		mfr_die_error(&e);
	if (fp)
		mfr_text_commit(fp, pairs, tmp_pairs);
	if (fm)
		mfr_text_commit(fm, map, tmp_map);
	/* GEMM work: every pair once (the tiles on the diagonal do a little more) */
	double work = 2.0 * (double)cs.n * (cs.n > 0 ? cs.n - 1 : 0) / 2 * cs.dim;
	fprintf(stderr,
		"mfr-merge-inter: %llu records, %llu relabelled; %zu classes in, %zu out; %zu pairs >= %g "
		"(%zu merged, %zu redundant, %zu capped); search %.2f s (%s, %.1f G%s/s, %s; %llu rescored); "
		"%.2f s\n",
		(unsigned long long)records, (unsigned long long)relabelled, cs.n, groups, n_edges, threshold,
		fate[MFR_EDGE_MERGED], fate[MFR_EDGE_REDUNDANT], fate[MFR_EDGE_CAPPED], ts,
		tk.method == MFR_SEARCH_INT8 ? "int8" : tk.method == MFR_SEARCH_BLOCKS ? "gpu" : "fp32",
		ts > 0 ? work / ts / 1e9 : 0.0, tk.method == MFR_SEARCH_INT8 ? "OP" : "FLOP",
		tk.method == MFR_SEARCH_INT8 ? mfr_qgemm_backend() : backend,
		(unsigned long long)tk.rescored, mfr_now() - t0);
	free(buf);
	free(edges);
	free(newlab);
	mfr_uf_free(&u);
	mfr_topk_free(&tk);
	mfr_centres_free(&cs);
	return mfr_close_stdout(0);
}
