/* maskaug_user.c — loading user mask templates (maskaug.h,
 * mfr_mask_templates_load): MaskTheFace's masks.cfg with its RGBA images and
 * six anchors, and FMA-3D's UV-space RGBA textures. Drawing them is
 * maskaug.c's business; this file only reads and checks files.
 */
#include <dirent.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maskaug.h"      /* defines: mfr_mask_templates_* */
#include "maskaug_impl.h" /* defines: tmpl, tmpl_view, TMPL_* */

/* Templates are small images; 64 Mpx is the project's pixel cap, and a
 * template of more than 16 Mpx would be a mistake long before that. */
#define TEMPLATE_PIXEL_CAP ((size_t)1 << 24)

static int load_rgba(const char *path, tmpl_view *v, mfr_error *e)
{
	uint8_t *data;
	size_t n;
	if (mfr_read_file(path, 256u << 20, &data, &n, e) < 0)
		return -1;
	png_image img;
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&img, data, n)) {
		mfr_fail(e, "'%s': not a PNG image (%s)", path, img.message);
		free(data);
		return -1;
	}
	if (!(img.format & PNG_FORMAT_FLAG_ALPHA)) {
		png_image_free(&img);
		free(data);
		return mfr_fail(e, "'%s': a mask template needs an alpha channel (RGBA)", path);
	}
	if ((size_t)img.width * img.height > TEMPLATE_PIXEL_CAP) {
		png_image_free(&img);
		free(data);
		return mfr_fail(e, "'%s': %ux%u is too large for a template", path, img.width, img.height);
	}
	img.format = PNG_FORMAT_RGBA;
	v->w = (int)img.width, v->h = (int)img.height;
	v->rgba = mfr_malloc((size_t)v->w * (size_t)v->h * 4, e);
	if (!v->rgba) {
		png_image_free(&img);
		free(data);
		return -1;
	}
	if (!png_image_finish_read(&img, NULL, v->rgba, 0, NULL)) {
		mfr_fail(e, "'%s': %s", path, img.message);
		free(v->rgba);
		v->rgba = NULL;
		free(data);
		return -1;
	}
	free(data);
	return 0;
}

/* Mean colour of the opaque part of view v. */
static uint32_t mean_colour(const tmpl_view *v)
{
	double s[3] = {0, 0, 0}, n = 0;
	for (size_t i = 0; i < (size_t)v->w * (size_t)v->h; i++) {
		const uint8_t *p = v->rgba + 4 * i;
		if (p[3] < 128)
			continue;
		s[0] += p[0], s[1] += p[1], s[2] += p[2], n++;
	}
	if (n == 0)
		return 0;
	return (uint32_t)(s[0] / n + 0.5) << 16 | (uint32_t)(s[1] / n + 0.5) << 8 | (uint32_t)(s[2] / n + 0.5);
}

static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

static tmpl *add(mfr_mask_templates *T, mfr_error *e)
{
	tmpl *t = mfr_realloc(T->t, (size_t)(T->n + 1) * sizeof *T->t, e);
	if (!t)
		return NULL;
	T->t = t;
	memset(&t[T->n], 0, sizeof *t);
	return &t[T->n++];
}

static int load_uv(mfr_mask_templates *T, const char *path, mfr_error *e)
{
	tmpl *t = add(T, e);
	if (!t)
		return -1;
	const char *base = strrchr(path, '/');
	snprintf(t->name, sizeof t->name, "%s", base ? base + 1 : path);
	t->kind = TMPL_UV;
	if (load_rgba(path, &t->view[0], e) < 0)
		return -1;
	if (t->view[0].w != 256 || t->view[0].h != 256)
		return mfr_fail(e, "'%s': an FMA-3D UV texture is 256x256, not %dx%d", path, t->view[0].w,
				t->view[0].h);
	t->colour = mean_colour(&t->view[0]);
	return 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int load_uv_dir(mfr_mask_templates *T, const char *dir, mfr_error *e)
{
	DIR *d = opendir(dir);
	if (!d)
		return mfr_fail(e, "'%s': cannot open the folder", dir);
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d))) {
		if (!ends_with(de->d_name, ".png"))
			continue;
		char **nn = mfr_realloc(names, (n + 1) * sizeof *names, e);
		if (!nn) {
			rc = -1;
			break;
		}
		names = nn;
		if (!(names[n] = strdup(de->d_name))) {
			rc = mfr_fail(e, "out of memory");
			break;
		}
		n++;
	}
	closedir(d);
	if (rc == 0)
		qsort(names, n, sizeof *names, by_name);
	for (size_t i = 0; i < n && rc == 0; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		rc = load_uv(T, path, e);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc == 0 && n == 0)
		return mfr_fail(e, "'%s': no .png textures in the folder", dir);
	return rc;
}

/* Trims white space at both ends in place. */
static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = 0;
	return s;
}

/* One [section] of masks.cfg as read. */
typedef struct {
	char name[64], path[1024];
	float pt[12];
	int have; /* bit k: mask_<a+k> seen; bit 6: template seen */
	int line;
} section;

static int finish_section(mfr_mask_templates *T, const char *cfg, const char *dir, const section *s, mfr_error *e)
{
	if (s->have == 0)
		return 0; /* MaskTheFace's [empty] and [inpaint] modes: no template */
	if (s->have != 0x7f)
		return mfr_fail(e, "'%s': section [%s] at line %d lacks template: or one of mask_a..mask_f", cfg,
				s->name, s->line);
	int view = VIEW_FRONT;
	char base[64];
	snprintf(base, sizeof base, "%s", s->name);
	if (ends_with(base, "_left"))
		view = VIEW_LEFT, base[strlen(base) - 5] = 0;
	else if (ends_with(base, "_right"))
		view = VIEW_RIGHT, base[strlen(base) - 6] = 0;
	tmpl *t = NULL;
	for (int i = 0; i < T->n; i++)
		if (strcmp(T->t[i].name, base) == 0)
			t = &T->t[i];
	if (!t) {
		if (!(t = add(T, e)))
			return -1;
		snprintf(t->name, sizeof t->name, "%s", base);
		t->kind = TMPL_MTF;
	}
	if (t->view[view].rgba)
		return mfr_fail(e, "'%s': section [%s] at line %d appears twice", cfg, s->name, s->line);
	/* MaskTheFace's paths are relative to its own repository
	 * (masks/templates/x.png); try beside the .cfg, then templates/ */
	char path[4096];
	FILE *f = NULL;
	if (s->path[0] == '/')
		snprintf(path, sizeof path, "%s", s->path);
	else
		snprintf(path, sizeof path, "%s/%s", dir, s->path);
	if ((f = fopen(path, "rb")) == NULL) {
		const char *b = strrchr(s->path, '/');
		snprintf(path, sizeof path, "%s/templates/%s", dir, b ? b + 1 : s->path);
		f = fopen(path, "rb");
	}
	if (!f)
		return mfr_fail(e, "'%s': template '%s' of [%s] not found (looked beside the .cfg and in templates/)",
				cfg, s->path, s->name);
	fclose(f);
	tmpl_view *v = &t->view[view];
	if (load_rgba(path, v, e) < 0)
		return -1;
	memcpy(v->pt, s->pt, sizeof v->pt);
	if (view == VIEW_FRONT || !t->colour)
		t->colour = mean_colour(v);
	return 0;
}

static int load_cfg(mfr_mask_templates *T, const char *path, mfr_error *e)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return mfr_fail(e, "'%s': cannot open", path);
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof dir, ".");
	char buf[2048];
	section s;
	int in = 0, line = 0, rc = 0;
	memset(&s, 0, sizeof s);
	while (rc == 0 && fgets(buf, sizeof buf, f)) {
		line++;
		char *l = trim(buf);
		if (!*l || *l == '#' || *l == ';')
			continue;
		if (*l == '[') {
			char *end = strchr(l, ']');
			if (!end || end == l + 1 || (size_t)(end - l - 1) >= sizeof s.name) {
				rc = mfr_fail(e, "'%s': line %d: bad section header", path, line);
				break;
			}
			if (in && (rc = finish_section(T, path, dir, &s, e)) < 0)
				break;
			memset(&s, 0, sizeof s);
			memcpy(s.name, l + 1, (size_t)(end - l - 1));
			s.line = line;
			in = 1;
			continue;
		}
		char *colon = strchr(l, ':');
		if (!in || !colon) {
			rc = mfr_fail(e, "'%s': line %d: expected [section] or key: value", path, line);
			break;
		}
		*colon = 0;
		char *key = trim(l), *val = trim(colon + 1);
		if (strcmp(key, "template") == 0) {
			if (strlen(val) >= sizeof s.path) {
				rc = mfr_fail(e, "'%s': line %d: path too long", path, line);
				break;
			}
			snprintf(s.path, sizeof s.path, "%s", val);
			s.have |= 64;
		} else if (strncmp(key, "mask_", 5) == 0 && key[5] >= 'a' && key[5] <= 'f' && !key[6]) {
			int k = key[5] - 'a';
			char *end;
			double x = strtod(val, &end);
			while (*end == ' ')
				end++;
			if (*end != ',') {
				rc = mfr_fail(e, "'%s': line %d: %s needs X, Y", path, line, key);
				break;
			}
			double y = strtod(end + 1, &end);
			if (*trim(end) || !(x > -1e6 && x < 1e6 && y > -1e6 && y < 1e6)) {
				rc = mfr_fail(e, "'%s': line %d: %s needs X, Y", path, line, key);
				break;
			}
			s.pt[2 * k] = (float)x, s.pt[2 * k + 1] = (float)y;
			s.have |= 1 << k;
		}
		/* other keys (MaskTheFace has none today) are ignored */
	}
	fclose(f);
	if (rc == 0 && in)
		rc = finish_section(T, path, dir, &s, e);
	if (rc == 0) {
		for (int i = 0; i < T->n; i++)
			if (T->t[i].kind == TMPL_MTF && !T->t[i].view[VIEW_FRONT].rgba)
				return mfr_fail(e, "'%s': mask '%s' has side views but no front view", path, T->t[i].name);
		if (T->n == 0)
			return mfr_fail(e, "'%s': no templates", path);
	}
	return rc;
}

mfr_mask_templates *mfr_mask_templates_load(const char *path, mfr_error *e)
{
	mfr_mask_templates *T = calloc(1, sizeof *T);
	if (!T) {
		mfr_fail(e, "out of memory");
		return NULL;
	}
	int rc;
	DIR *d = opendir(path);
	if (d) {
		closedir(d);
		rc = load_uv_dir(T, path, e);
	} else if (ends_with(path, ".cfg")) {
		rc = load_cfg(T, path, e);
	} else if (ends_with(path, ".png")) {
		rc = load_uv(T, path, e);
	} else {
		rc = mfr_fail(e, "'%s': not a MaskTheFace .cfg, an FMA-3D .png texture or a folder of them", path);
	}
	if (rc < 0) {
		mfr_mask_templates_free(T);
		return NULL;
	}
	return T;
}

void mfr_mask_templates_free(mfr_mask_templates *T)
{
	if (!T)
		return;
	for (int i = 0; i < T->n; i++)
		for (int k = 0; k < 3; k++)
			free(T->t[i].view[k].rgba);
	free(T->t);
	free(T);
}

int mfr_mask_templates_count(const mfr_mask_templates *T) { return T ? T->n : 0; }

const char *mfr_mask_templates_name(const mfr_mask_templates *T, int i)
{
	return T && i >= 0 && i < T->n ? T->t[i].name : NULL;
}
