"""Which tests are ``slow`` (left out of ``./scripts/test.sh --quick``), and why.

A test is slow when it needs a test bed (an emulated board, the adb stand-in, PostgreSQL, Ray,
headless Chromium), converts with TensorFlow or LiteRT, or measured 4 s or more in a full run
(``pytest --durations=0`` on the 2-core machine). The quick tier is everything else: every
module's fast paths, in under 5 minutes with the idempotent setup.
"""

from __future__ import annotations

# whole modules: every test in them drives a test bed
SLOW_MODULES = frozenset({
    "test_sweep.py",  # Ray cluster + emulated Pis + PostgreSQL
    "test_ssh_runner.py",  # emulated Pi over SSH
    "test_faults.py",  # faults injected into SSH, the probe and the converter
})

# fixtures that start a test bed
TESTBED_FIXTURES = frozenset({
    "pi", "pi2", "pi_pair", "pi_bench", "proxy",  # emulated Pi sshd
    "android", "bench_out", "own_adb_server",  # adb server + Android stand-in
    "pg_server", "postgres",  # PostgreSQL
    "lab", "cluster",  # Ray
})

# session/module fixtures whose setup converts with TensorFlow/LiteRT or benches many variants
SLOW_FIXTURES = frozenset({
    "fused", "gru_unrolled", "lstm_quantized", "foreign",  # test_tflite_keras: TF conversions
    "converted",  # test_tflite_litert: litert-torch conversions
    "encoder_bench",  # test_int8_budget: trains an encoder and benches every ONNX int8 form
    "fused_corpus",  # test_tflite_fused: litert-torch conversions of 12 architectures
    "made",  # test_tflite_quant_choices: LiteRT quantized files
    "fused_lstm",  # test_runtimes: a tf_keras conversion
    "weather_bench",  # test_bench: every variant of two models
    "compared",  # test_compare: training + bench of every contender
    "trial_bench",  # test_truth: three timing trials of every variant
    "kws_export",  # test_streaming: the step model through every format
    "enhancer",  # test_frame_outputs: a streaming enhancer benched on every ONNX form
})

# single tests (name without parameters) that take 4 s or more, or convert with TF/LiteRT
SLOW_TESTS = frozenset({
    # training on two processes (spawned interpreters import torch: ~20 s)
    "test_convergence.py::test_compare_reports_epochs_used_and_stops_each_contender",
    # TensorFlow / LiteRT conversions
    "test_tflite_fused.py::test_final_cell_state_read_makes_that_layer_a_loop",
    "test_tflite_fused.py::test_scripted_step_model_is_cells_with_state_in_and_out",
    "test_tflite_fused.py::test_traced_torchscript_speaker_encoder_is_fused",
    "test_tflite_keras.py::test_weight_transfer_parity",
    "test_tflite_keras.py::test_scripted_conv_lstm_is_fused_with_dynamic_sequence",
    "test_tflite_keras.py::test_scripted_conv_lstm_unrolled_has_dynamic_batch",
    "test_tflite_keras.py::test_scripted_conv_lstm_dynamic_int8_keeps_the_fused_lstm",
    "test_tflite_keras.py::test_quantized_lstm_variants_run_and_are_smaller",
    "test_tflite_keras.py::test_traced_token_bilstm",
    "test_tflite_keras.py::test_pickled_seq_first_gru_through_torch_fx",
    "test_tflite_keras.py::test_sequence_model_without_config_goes_through_the_fx_graph",
    "test_tflite_keras.py::test_int8_calibrates_on_every_sample_given",
    "test_tflite_keras.py::test_gru_loop_int8_calibrator_crash_is_clean",
    "test_tflite_keras.py::test_gru_unrolled",
    "test_tflite_keras.py::test_gru_unrolled_int8",
    "test_tflite_keras.py::test_gru_after_lstm_gets_its_own_zero_state",
    "test_tflite_keras.py::test_crash_and_timeout_in_child_are_one_line",
    "test_tflite_litert.py::test_int8_calibrates_on_every_sample_given",
    "test_tflite_litert.py::test_fp32_parity_unrolled_fixed_shape",
    "test_tflite_litert.py::test_torchscript_archive_converts_with_parity",
    "test_tflite_quant_choices.py::test_weight_only_stores_int8_and_computes_float",
    "test_tflite_quant_choices.py::test_mixed_keeps_the_front_float_within_the_budget",
    "test_runtimes.py::test_tf_lite_matches_litert_and_is_stateless",
    "test_streaming.py::test_eager_pickled_step_gru_to_tflite",
    "test_streaming.py::test_streaming_step_models_equal_the_whole_sequence_model",
    # whole benches of many variants
    "test_bench.py::test_every_variant_measured_for_lstm_and_gru",
    "test_bench.py::test_token_model_bench",
    "test_bench.py::test_forecaster_bench_uses_mae",
    "test_bench.py::test_missing_runtime_is_a_failed_row_and_others_are_kept",
    "test_bench.py::test_rows_survive_a_later_failure",
    "test_store_select.py::test_new_calibration_file_requantizes",
    "test_store_select.py::test_rerun_reuses_store_and_force_remeasures",
    "test_store_select.py::test_two_benches_at_once_lose_no_rows",
    "test_store_select.py::test_select_cli_exit_codes",
    "test_report.py::test_pick_is_verified_against_the_stored_rows",
    "test_report.py::test_report_renders_in_headless_chromium",  # Chromium
    "test_compare.py::test_contenders_with_measured_training",
    "test_truth.py::test_strict_fails_when_any_variant_failed",
    "test_truth.py::test_every_row_is_timed_in_three_trials",
    "test_streaming.py::test_scripted_step_model_to_onnx_keeps_names_and_chains_exactly",
    "test_streaming.py::test_compare_benches_step_models",
    "test_streaming.py::test_stored_rows_are_not_reused_for_another_signature",
    "test_quantize_rnn.py::test_torch_int8_peer_row",
    "test_frame_outputs.py::test_whole_sequence_mask_per_frame_judged_by_the_named_output",
    "test_frame_outputs.py::test_int8_mixed_search_uses_the_metric_fn",
    "test_frame_outputs.py::test_snr_gain_builtin_from_clean_and_noisy",
    "test_frame_outputs.py::test_metric_fn_judges_rows_select_uses_it",
    "test_frame_outputs.py::test_classification_still_shows_agree",
    "test_sandbox.py::test_sandboxed_bench_of_a_benign_model",  # a whole bench, sandboxed
    "test_sandbox.py::test_bench_does_not_run_onnxruntime_py_from_the_working_directory",
    "test_hostile.py::test_nan_weights_bench_fails_and_is_never_picked",
    "test_streaming.py::test_bench_step_model_scores_every_step_and_reports_rtf",
    "test_streaming.py::test_bench_uses_initial_states_from_the_data",
    "test_inputs_used.py::test_bench_after_export_to_the_same_folder_converts_nothing",
    "test_inputs_used.py::test_one_hot_labels_are_read_as_classes",
    "test_inputs_used.py::test_spec_less_file_exports_and_inspects_with_only_data",
    "test_quantize_rnn.py::test_conv_kept_float_variant_and_the_per_op_decision",
    "test_quantize_rnn.py::test_max_drop_keeps_the_sensitive_op_float",
    # adb / SSH test beds started inside the test
    "test_adb_runner.py::test_unauthorized_offline_not_found_and_several_devices",
    "test_adb_runner.py::test_measure_reports_sources_and_one_delegate_per_call",
    "test_adb_runner.py::test_quotes_spaces_and_shell_syntax_in_remote_dir",
    "test_adb_runner.py::test_timeout_kills_the_remote_tool_and_removes_the_run_dir",
    "test_adb_runner.py::test_bench_old_form_without_shell_v2_and_taskset",
    "test_adb_runner.py::test_one_row_per_delegate_in_bench",
    "test_adb_runner.py::test_rejected_gpu_delegate_is_a_failed_row_with_the_tools_reason",
    "test_inventory.py::test_adb_devices_behind_one_server_all_get_their_own_answer",
    "test_targets.py::test_android_emulator_check_without_an_emulator",
})


def is_slow(nodeid: str, fixtures: list[str], param: object = None) -> bool:
    """Whether the test ``nodeid`` (``tests/mod.py::name[params]``) is slow."""
    path, _, name = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1]
    if module in SLOW_MODULES or (TESTBED_FIXTURES | SLOW_FIXTURES) & set(fixtures):
        return True
    if param == "postgres":  # a store test's PostgreSQL backend
        return True
    return f"{module}::{name.split('[')[0]}" in SLOW_TESTS
