#!/usr/bin/env bats
# mfr-model --from-dlib: dlib's ResNet face descriptor converted from
# face-api.js's TensorFlow.js weights, checked against an independent numpy
# implementation (tests/ref/dlib_ref.py) and on LFW pairs. Needs the shared
# data (skips without it); the numpy check also needs python3 with numpy.
bats_require_minimum_version 1.5.0
load helpers

MODEL_DIR=models/dlib_resnet_tfjs

setup() {
	common_setup
	TT=$REPO/${MFR_BUILD:-build/rel}/ttools
}

convert() {
	need_data "$MODEL_DIR/face_recognition_model-weights_manifest.json"
	mfr-model --from-dlib "$DATA/$MODEL_DIR" -o dlib.mfrm 2>/dev/null
}

@test "mfr-model --from-dlib converts the model; --info shows dlib's input and template" {
	need_data "$MODEL_DIR/face_recognition_model-weights_manifest.json"
	run -0 mfr-model --from-dlib "$DATA/$MODEL_DIR" -o dlib.mfrm
	contains "$output" "175 tensors"
	[ -f dlib.mfrm ] && [ ! -e dlib.mfrm.tmp ]
	run -0 mfr-model --info dlib.mfrm
	contains "$output" "input: 150x150x3 RGB, (x - [122.782 117.001 104.298]) * [0.00390625 0.00390625 0.00390625]"
	contains "$output" "template: 47.55 46.6 100.46 46.6 74.01 76.56 50.41 103.02 97.61 103.02"
	contains "$output" "output: fc (128)"
	equals "${lines[-1]}" "total: 5614592 params, 272M MACs"
	run -0 mfr-model --arch dlib.mfrm
	contains "$output" "eps=1e-20"
	lacks "$output" $'\nl2norm '
	# the same weights give the same file
	mfr-model --from-dlib "$DATA/$MODEL_DIR" -o again.mfrm 2>/dev/null
	cmp dlib.mfrm again.mfrm
}

@test "mfr-embed with the converted model agrees with the numpy reference within 1e-4" {
	python3 -c 'import numpy' 2>/dev/null || skip "python3 with numpy is absent (pip install numpy)"
	need_data lfw/landmarks_aligned112.txt
	convert
	[ -x "$TT/dlibchip" ] || { echo "$TT/dlibchip is missing: make $TT/dlibchip" >&2; return 1; }
	# the same aligned 150x150 pixels to both sides: PNG for mfr-pack (no
	# landmarks, so mfr-embed does no alignment), PPM for the script
	grep -E '^(Aaron_Eckhart|Abel_Pacheco|Akhmed_Zakayev)/' "$DATA/lfw/landmarks_aligned112.txt" | head -n 4 > list.txt
	mkdir -p chips/x ppm
	"$TT/dlibchip" list.txt "$DATA/lfw/aligned112" chips/x ppm
	mfr-pack -o chips.mfr chips 2>/dev/null
	mfr-embed -m dlib.mfrm -o emb.mfr chips.mfr 2>/dev/null
	mfr-cat --list --values emb.mfr > emb.tsv
	run -0 python3 "$REPO/tests/ref/dlib_ref.py" --compare emb.tsv "$DATA/$MODEL_DIR" ppm/0000.ppm ppm/0001.ppm \
		ppm/0002.ppm ppm/0003.ppm
	echo "$output"
	contains "$output" "worst: "
}

# dist EMB.tsv I J: Euclidean distance of embeddings I and J (0-based rows)
dist() {
	awk -F'\t' -v i="$2" -v j="$3" 'NR > 1 { r = NR - 2; if (r == i || r == j) for (d = 7; d <= NF; d++) v[r, d] = $d }
		END { for (d = 7; d <= NF; d++) s += (v[i, d] - v[j, d]) ^ 2; printf "%.4f\n", sqrt(s) }' "$1"
}

@test "LFW: same-person pairs are closer than dlib's 0.6, different-person pairs farther" {
	need_data lfw/pairs.txt
	need_data lfw/landmarks_aligned112.txt
	convert
	# pairs.txt's first three same and first three different pairs (fold 1);
	# the 112x112 crops keep their landmarks and mfr-embed aligns them to
	# dlib's 150x150 template (what is outside the crop is black)
	local faces=(Abel_Pacheco_0001 Abel_Pacheco_0004 Akhmed_Zakayev_0001 Akhmed_Zakayev_0003 Akhmed_Zakayev_0002
		Abdel_Madi_Shabneh_0001 Dean_Barker_0001 Giancarlo_Fisichella_0001 Mikhail_Gorbachev_0001)
	local f
	for f in "${faces[@]}"; do
		grep "/${f}.jpg " "$DATA/lfw/landmarks_aligned112.txt"
	done > list.txt
	[ "$(wc -l < list.txt)" -eq 9 ]
	mfr-pack --list list.txt --root "$DATA/lfw/aligned112" --no-align -o faces.mfr 2>/dev/null
	mfr-embed -m dlib.mfrm -o emb.mfr faces.mfr 2>/dev/null
	mfr-cat --list --values emb.mfr > emb.tsv
	local same=("0 1" "2 3" "4 3") diff=("5 6" "5 7" "5 8") p d
	for p in "${same[@]}"; do
		d=$(dist emb.tsv $p)
		echo "same $p: $d"
		awk -v d="$d" 'BEGIN { exit !(d < 0.6) }'
	done
	for p in "${diff[@]}"; do
		d=$(dist emb.tsv $p)
		echo "different $p: $d"
		awk -v d="$d" 'BEGIN { exit !(d > 0.6) }'
	done
}

@test "mfr-model --from-dlib: a missing folder, a damaged manifest or a short shard fail with exit 1" {
	run -1 mfr-model --from-dlib nothere -o x.mfrm
	contains "$output" "nothere/face_recognition_model-weights_manifest.json"
	no_file x.mfrm x.mfrm.tmp
	run -2 mfr-model --from-dlib nothere
	is_usage_on "$output"
	run -2 mfr-model --from-dlib nothere --fp16 -o x.mfrm

	need_data "$MODEL_DIR/face_recognition_model-weights_manifest.json"
	local m=face_recognition_model-weights_manifest.json
	mkdir d
	head -c 1000 "$DATA/$MODEL_DIR/$m" > d/$m
	run -1 mfr-model --from-dlib d -o x.mfrm
	contains "$output" "byte 1000: "
	no_file x.mfrm x.mfrm.tmp
	sed 's/"scale":0.0005260649557207145/"scale":0.00052606495572.07145/' "$DATA/$MODEL_DIR/$m" > d/$m
	run -1 mfr-model --from-dlib d -o x.mfrm
	contains "$output" "byte 169: expected ',' or '}'"
	# sound JSON, but a network that is not dlib's
	sed 's/"conv32_1\/conv1\/conv\/filters"/"conv32_1\/conv1\/conv\/weights"/' "$DATA/$MODEL_DIR/$m" > d/$m
	head -c 100000 "$DATA/$MODEL_DIR/face_recognition_model.bin" > d/face_recognition_model.bin
	run -1 mfr-model --from-dlib d -o x.mfrm
	contains "$output" "shards hold 100000 bytes, the manifest describes 6444032"
	cp "$DATA/$MODEL_DIR/face_recognition_model.bin" d/
	run -1 mfr-model --from-dlib d -o x.mfrm
	contains "$output" "no weight 'conv32_1/conv1/conv/filters'"
	no_file x.mfrm x.mfrm.tmp
}
