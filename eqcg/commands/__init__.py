"""The entry points: the ``eqcg`` command line (:mod:`~eqcg.commands.cli`), ablations that
train, roll out, evaluate and compare variants (:mod:`~eqcg.commands.ablation`) and ``eqcg
info`` (:mod:`~eqcg.commands.info`)."""
