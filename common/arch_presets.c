/* arch_presets.c — the named architectures, generated as .arch text.
 *
 * A preset is nothing but text: mfr_arch_preset writes it, mfr_arch_parse
 * reads it like any file, so `--describe r50` and a user's edited copy of it
 * go through the same code. Layer names follow insightface's PyTorch module
 * names (conv1, layer1.0.bn2, downsample.0, fc, features), so a tensor of a
 * preset is named exactly as in an insightface state_dict ("layer1.0.conv1.weight").
 *
 * iresnet r18..r200 reproduce insightface arcface_torch backbones/iresnet.py.
 * The ResNet-50 family (plain, SE, ResNeXt 32x4d, split attention) is adapted
 * to 112x112 faces the way iresnet adapts ResNet (data-formats.md 8.7): the
 * iresnet stem (3x3 stride 1 conv, BN, PReLU; no max pool), stride 2 in the
 * first block of all four stages (112 -> 7), and the iresnet head.
 */
#include <stdlib.h>
#include <string.h>

#include "arch.h" /* defines: mfr_arch_preset, mfr_arch_preset_names, mfr_arch_load */


/* Stem shared by every preset: insightface's conv1-bn1-prelu at 112x112. */
static void stem(mfr_text *b)
{
	mfr_text_printf(b, "input data 3 112 112\n");
	mfr_text_printf(b, "conv conv1 data out=64 k=3 s=1 p=1 bias=0\n");
	mfr_text_printf(b, "bn bn1 conv1 eps=1e-05\n");
	mfr_text_printf(b, "prelu prelu bn1\n");
}

/* Head shared by every preset: BN2d, flatten, dropout (the trainer sets
 * p=0.4 as insightface does), fc C*7*7 -> 512 with bias, BN1d whose gamma
 * insightface fixes at 1 (features.weight.requires_grad = False). */
static void head(mfr_text *b, const char *x)
{
	mfr_text_printf(b, "# head: BN, flatten, dropout, fc to the 512-d embedding, BN1d (gamma fixed at 1)\n");
	mfr_text_printf(b, "bn bn2 %s eps=1e-05\n", x);
	mfr_text_printf(b, "flatten flatten bn2\n");
	mfr_text_printf(b, "dropout dropout flatten p=0\n");
	mfr_text_printf(b, "linear fc dropout out=512 bias=1\n");
	mfr_text_printf(b, "bn1d features fc eps=1e-05 fixgamma=1\n");
	mfr_text_printf(b, "output features\n");
}

static void iresnet(mfr_text *b, const char *name, const int layers[4])
{
	mfr_text_printf(b, "mfr-arch 1\n");
	mfr_text_printf(b, "# %s: insightface iresnet (arcface_torch backbones/iresnet.py), blocks %d,%d,%d,%d\n", name,
	    layers[0], layers[1], layers[2], layers[3]);
	mfr_text_printf(b, "# IBasicBlock: BN, conv3x3, BN, PReLU, conv3x3 (stride), BN, + shortcut; no activation after the add\n");
	stem(b);
	char x[80] = "prelu", p[32];
	int inplanes = 64;
	for (int st = 0; st < 4; st++) {
		int planes = 64 << st;
		mfr_text_printf(b, "# layer%d: %d blocks, %d channels, stride 2 in the first\n", st + 1, layers[st], planes);
		for (int k = 0; k < layers[st]; k++) {
			int s = k ? 1 : 2;
			snprintf(p, sizeof p, "layer%d.%d", st + 1, k);
			mfr_text_printf(b, "bn %s.bn1 %s eps=1e-05\n", p, x);
			mfr_text_printf(b, "conv %s.conv1 %s.bn1 out=%d k=3 s=1 p=1 bias=0\n", p, p, planes);
			mfr_text_printf(b, "bn %s.bn2 %s.conv1 eps=1e-05\n", p, p);
			mfr_text_printf(b, "prelu %s.prelu %s.bn2\n", p, p);
			mfr_text_printf(b, "conv %s.conv2 %s.prelu out=%d k=3 s=%d p=1 bias=0\n", p, p, planes, s);
			mfr_text_printf(b, "bn %s.bn3 %s.conv2 eps=1e-05\n", p, p);
			if (s != 1 || inplanes != planes) {
				mfr_text_printf(b, "conv %s.downsample.0 %s out=%d k=1 s=%d p=0 bias=0\n", p, x, planes, s);
				mfr_text_printf(b, "bn %s.downsample.1 %s.downsample.0 eps=1e-05\n", p, p);
				mfr_text_printf(b, "add %s.add %s.bn3 %s.downsample.1\n", p, p, p);
			} else
				mfr_text_printf(b, "add %s.add %s.bn3 %s\n", p, p, x);
			snprintf(x, sizeof x, "%s.add", p);
			inplanes = planes;
		}
	}
	head(b, x);
}

enum { PLAIN, SE, NEXT, NEST };

/* ResNet-50 bottleneck family at 112x112 (see the file comment). */
static void resnet50(mfr_text *b, const char *name, int variant)
{
	static const int layers[4] = {3, 4, 6, 3};
	mfr_text_printf(b, "mfr-arch 1\n");
	mfr_text_printf(b, "# %s adapted to 112x112 faces: iresnet stem (3x3 stride 1, BN, PReLU, no max pool),\n", name);
	mfr_text_printf(b, "# stride 2 in the first block of every stage (112 -> 7), iresnet head (512-d)\n");
	if (variant == SE)
		mfr_text_printf(b, "# SE (r=16) on the residual branch after bn3, before the add (Hu et al.)\n");
	if (variant == NEXT)
		mfr_text_printf(b, "# ResNeXt 32x4d: 3x3 conv with 32 groups of width 4*planes/64\n");
	if (variant == NEST)
		mfr_text_printf(b, "# split attention (ResNeSt-like): radix 2, cardinality 1; the 3x3 conv gives 2*width\n"
		       "# channels in 2 groups, BN, ReLU, then splat; stride in that conv (no avd, no avg_down)\n");
	stem(b);
	char x[80] = "prelu", p[32];
	int inplanes = 64;
	for (int st = 0; st < 4; st++) {
		int planes = 64 << st, out = planes * 4;
		int width = variant == NEXT ? planes / 64 * 4 * 32 : planes;
		mfr_text_printf(b, "# layer%d: %d bottlenecks, width %d, %d channels out\n", st + 1, layers[st], width, out);
		for (int k = 0; k < layers[st]; k++) {
			int s = k ? 1 : 2;
			snprintf(p, sizeof p, "layer%d.%d", st + 1, k);
			mfr_text_printf(b, "conv %s.conv1 %s out=%d k=1 s=1 p=0 bias=0\n", p, x, width);
			mfr_text_printf(b, "bn %s.bn1 %s.conv1 eps=1e-05\n", p, p);
			mfr_text_printf(b, "relu %s.relu1 %s.bn1\n", p, p);
			if (variant == NEST) {
				mfr_text_printf(b, "conv %s.conv2 %s.relu1 out=%d k=3 s=%d p=1 g=2 bias=0\n", p, p, 2 * width, s);
				mfr_text_printf(b, "bn %s.bn2 %s.conv2 eps=1e-05\n", p, p);
				mfr_text_printf(b, "relu %s.relu2 %s.bn2\n", p, p);
				mfr_text_printf(b, "splat %s.splat %s.relu2 radix=2\n", p, p);
				mfr_text_printf(b, "conv %s.conv3 %s.splat out=%d k=1 s=1 p=0 bias=0\n", p, p, out);
			} else {
				mfr_text_printf(b, "conv %s.conv2 %s.relu1 out=%d k=3 s=%d p=1 g=%d bias=0\n", p, p, width, s,
				    variant == NEXT ? 32 : 1);
				mfr_text_printf(b, "bn %s.bn2 %s.conv2 eps=1e-05\n", p, p);
				mfr_text_printf(b, "relu %s.relu2 %s.bn2\n", p, p);
				mfr_text_printf(b, "conv %s.conv3 %s.relu2 out=%d k=1 s=1 p=0 bias=0\n", p, p, out);
			}
			mfr_text_printf(b, "bn %s.bn3 %s.conv3 eps=1e-05\n", p, p);
			char res[80];
			snprintf(res, sizeof res, "%s.bn3", p);
			if (variant == SE) {
				mfr_text_printf(b, "se %s.se %s.bn3 r=16\n", p, p);
				snprintf(res, sizeof res, "%s.se", p);
			}
			if (s != 1 || inplanes != out) {
				mfr_text_printf(b, "conv %s.downsample.0 %s out=%d k=1 s=%d p=0 bias=0\n", p, x, out, s);
				mfr_text_printf(b, "bn %s.downsample.1 %s.downsample.0 eps=1e-05\n", p, p);
				mfr_text_printf(b, "add %s.add %s %s.downsample.1\n", p, res, p);
			} else
				mfr_text_printf(b, "add %s.add %s %s\n", p, res, x);
			mfr_text_printf(b, "relu %s.relu %s.add\n", p, p);
			snprintf(x, sizeof x, "%s.relu", p);
			inplanes = out;
		}
	}
	head(b, x);
}

static const char *const names[] = {"r18", "r34", "r50", "r100", "r200", "resnet50", "se-resnet50",
				    "resnext50", "resnest50", NULL};

static const struct {
	const char *alias, *name;
} aliases[] = {
	{"iresnet18", "r18"}, {"iresnet34", "r34"}, {"iresnet50", "r50"}, {"iresnet100", "r100"},
	{"iresnet200", "r200"}, {"seresnet50", "se-resnet50"}, {"se_resnet50", "se-resnet50"},
	{"resnext50-32x4d", "resnext50"}, {"resnext50_32x4d", "resnext50"},
};

const char *const *mfr_arch_preset_names(void) { return names; }

char *mfr_arch_preset(const char *name, mfr_error *e)
{
	const char *n = name;
	for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
		if (!strcmp(name, aliases[i].alias))
			n = aliases[i].name;
	static const int ir[5][4] = {{2, 2, 2, 2}, {3, 4, 6, 3}, {3, 4, 14, 3}, {3, 13, 30, 3}, {6, 26, 60, 6}};
	mfr_text b = {0};
	int k = 0;
	while (names[k] && strcmp(names[k], n))
		k++;
	if (!names[k]) {
		mfr_fail(e, "unknown architecture preset '%s' (known: r18 r34 r50 r100 r200 resnet50 "
			    "se-resnet50 resnext50 resnest50)", name);
		return NULL;
	}
	if (k < 5)
		iresnet(&b, n, ir[k]);
	else
		resnet50(&b, n, k - 5 == 0 ? PLAIN : k - 5 == 1 ? SE : k - 5 == 2 ? NEXT : NEST);
	if (b.failed) {
		free(b.d);
		mfr_fail(e, "out of memory writing preset '%s'", name);
		return NULL;
	}
	return b.d;
}
