"""Dynamic TP/SL: take-profit and stop-loss distances from a signal's confidence.

A confident signal earns a wider target and a tighter stop; a weak one the opposite. The risk
mode scales the two distances (its `tp_multiplier` and `sl_multiplier`), never the confidence:
multiplying the confidence was the original system's defect that let weak signals through under
stress.

The steps, in this order (each later step wins over an earlier one):

1. raw distances, with c the signal's confidence and m the risk mode's row:
   TP = base_tp_pct x (tp_scale.offset + tp_scale.per_confidence x c) x m.tp_multiplier,
   SL = base_sl_pct x (sl_scale.offset + sl_scale.per_confidence x c) x m.sl_multiplier;
2. SL clamped into [sl_pct_min, sl_pct_max]; the stop is fixed first because it is the risk;
3. reward:risk held within [reward_risk_min, reward_risk_max] by moving TP only
   (TP = SL x the bound it crossed);
4. TP clamped into [tp_pct_min, tp_pct_max]. The TP clamps are hard limits, so they win over
   the ratio; when the clamp pushes the ratio out of its bounds again, the reason says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aios.hookspecs import hookimpl
from aios.model import CycleContext, Signal, TpSlProposal
from aios.plugin import Subsystem


def _scale(spec: Mapping[str, Any], confidence: float) -> float:
    """The linear confidence scale `offset + per_confidence x confidence` of one distance."""
    return float(spec["offset"]) + float(spec["per_confidence"]) * confidence


class DynamicTpSl(Subsystem):
    """Proposes TP and SL distances (percent of the entry) for each signal."""

    name = "dynamic_tpsl"

    @hookimpl
    def aios_adjust_signal(self, ctx: CycleContext, signal: Signal) -> TpSlProposal:
        settings = self.settings(ctx)
        multipliers = ctx.risk_multipliers()
        confidence = signal.confidence
        mode = ctx.risk_mode.value

        raw_tp = (
            float(settings["base_tp_pct"])
            * _scale(settings["tp_scale"], confidence)
            * float(multipliers["tp_multiplier"])
        )
        raw_sl = (
            float(settings["base_sl_pct"])
            * _scale(settings["sl_scale"], confidence)
            * float(multipliers["sl_multiplier"])
        )
        steps: list[str] = []

        sl_min, sl_max = float(settings["sl_pct_min"]), float(settings["sl_pct_max"])
        sl = min(max(raw_sl, sl_min), sl_max)
        if sl != raw_sl:
            bound = "sl_pct_min" if raw_sl < sl_min else "sl_pct_max"
            steps.append(f"SL {raw_sl:.3f}% clamped to {bound} {sl:g}%")

        rr_min, rr_max = float(settings["reward_risk_min"]), float(settings["reward_risk_max"])
        tp = raw_tp
        ratio = tp / sl
        if ratio < rr_min:
            tp = sl * rr_min
            steps.append(f"R:R {ratio:.3f} below {rr_min:g}, TP widened to {tp:.3f}%")
        elif ratio > rr_max:
            tp = sl * rr_max
            steps.append(f"R:R {ratio:.3f} above {rr_max:g}, TP narrowed to {tp:.3f}%")

        tp_min, tp_max = float(settings["tp_pct_min"]), float(settings["tp_pct_max"])
        clamped_tp = min(max(tp, tp_min), tp_max)
        if clamped_tp != tp:
            bound = "tp_pct_min" if tp < tp_min else "tp_pct_max"
            steps.append(f"TP {tp:.3f}% clamped to {bound} {clamped_tp:g}%")
            tp = clamped_tp
            final_ratio = tp / sl
            if not rr_min <= final_ratio <= rr_max:
                steps.append(
                    f"R:R {final_ratio:.3f} is left outside [{rr_min:g}, {rr_max:g}] by that clamp"
                )

        reason = (
            f"TP {tp:.3f}% / SL {sl:.3f}% (R:R {tp / sl:.3f}) for confidence {confidence:.3f} "
            f"in {mode} (TP x{float(multipliers['tp_multiplier']):g}, "
            f"SL x{float(multipliers['sl_multiplier']):g}): raw TP {raw_tp:.3f}%, "
            f"raw SL {raw_sl:.3f}%"
        )
        if steps:
            reason += "; " + "; ".join(steps)
        return TpSlProposal(tp_pct=tp, sl_pct=sl, reason=reason)
