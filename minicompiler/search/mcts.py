"""Monte Carlo tree search over transformation sequences, expanded by a proposer.

Nodes are programs (schedules); an edge is the step sequence a proposer suggested.
One iteration: *select* a node by UCT (mean reward + c·sqrt(ln N_parent / N_child)),
*expand* it with up to ``branching`` new proposals, *evaluate* each new child by a real
measurement (reward: its speedup over the unscheduled program, normalised by the best
speedup seen), and *backpropagate* the reward to the root.

Progressive widening decides between expanding and descending: a node visited N times may
have up to max(branching, ceil(widening·√N)) children. A proposer ranks many variants (register
tiles x cache blockings x loop orders); the first few are tried at once, and a node whose
subtree keeps paying off earns more of its lower-ranked variants, so measurements rather than
the ranking decide among them.

Evaluation with ``rollout=True`` (the default) measures the child's program *completed*
by the heuristic proposer's first choice at every later phase (tile → micro-kernel →
vectorize → parallel): the classic MCTS rollout with a cheap default policy. Every sample
is then a whole schedule, so a decision early in the tree is judged by what it leads to,
not by a half-transformed program. A node whose proposer has
nothing new to offer is exhausted; a subtree whose nodes are all exhausted is never
selected again, and the search ends early when the whole tree is.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Optional

import networkx as nx

from minicompiler.schedule import Schedule

from .legality import try_steps
from .heuristic import greedy_schedule
from .proposer import Ancestor, Context, Proposal, Proposer
from .session import BudgetExhausted, Session


@dataclass(eq=False)
class Node:
    schedule: Schedule
    parent: Optional["Node"] = None
    proposal: Optional[Proposal] = None
    children: list["Node"] = field(default_factory=list)
    time_s: Optional[float] = None
    visits: int = 0
    value: float = 0.0
    exhausted: bool = False

    def done(self) -> bool:
        """Nothing left to try in this subtree."""
        return self.exhausted and all(c.done() for c in self.children)

    def uct(self, c: float) -> float:
        if self.visits == 0:
            return math.inf
        assert self.parent is not None
        return self.value / self.visits + c * math.sqrt(math.log(max(1, self.parent.visits)) / self.visits)


class MCTS:
    name = "mcts"

    def __init__(self, proposer: Proposer, c: float = math.sqrt(2), branching: int = 2,
                 ancestor_depth: int = 2, rollout: bool = True, max_rollout_steps: int = 12,
                 widening: float = 1.5) -> None:
        self.proposer, self.c, self.branching, self.ancestor_depth = proposer, c, branching, ancestor_depth
        self.widening = widening
        self.rollout, self.max_rollout_steps = rollout, max_rollout_steps
        self.root: Optional[Node] = None

    def run(self, session: Session, rng: random.Random) -> None:
        root = self.root = Node(session.workload.schedule())
        try:
            session.measure(root.schedule)  # the unscheduled program: the baseline of every speedup
            root.time_s = self._evaluate(root, session)
            self._backpropagate(root, session.reward(root.time_s))
            while session.remaining > 0 and not root.done():
                node = self._select(root)
                children = self._expand(node, session)
                if not children:
                    node.exhausted = True
                    continue
                for child in children:
                    child.time_s = self._evaluate(child, session)
                    self._backpropagate(child, session.reward(child.time_s))
        except BudgetExhausted:
            pass

    def _evaluate(self, node: Node, session: Session) -> Optional[float]:
        schedule = self._complete(node.schedule, session) if self.rollout else node.schedule
        return session.measure(schedule)

    def _complete(self, schedule: Schedule, session: Session) -> Schedule:
        """The default policy: the heuristic's first proposal at each remaining phase."""
        return greedy_schedule(schedule, session.target, self.max_rollout_steps)

    def _width(self, node: Node) -> int:
        """How many children a node has earned: grows with the square root of its visits."""
        return max(self.branching, math.ceil(self.widening * math.sqrt(max(1, node.visits))))

    def _select(self, node: Node) -> Node:
        while True:
            open_children = [c for c in node.children if not c.done()]
            if not open_children or (not node.exhausted and len(node.children) < self._width(node)):
                return node
            node = max(open_children, key=lambda c: c.uct(self.c))

    def _expand(self, node: Node, session: Session) -> list[Node]:
        ancestors, parent = [], node.parent
        while parent is not None and len(ancestors) < self.ancestor_depth:
            ancestors.append(Ancestor(parent.schedule, parent.time_s))
            parent = parent.parent
        context = Context(node.schedule, session.target, node.time_s, session.baseline_s, ancestors,
                          tried=[c.proposal.steps for c in node.children if c.proposal])
        room = max(1, min(self.branching, self._width(node) - len(node.children)))
        proposals = self.proposer.propose(context, room)
        children = []
        known = {c.proposal.steps for c in node.children if c.proposal}
        for proposal in proposals[:room]:
            if proposal.steps in known:
                continue
            schedule = try_steps(node.schedule, proposal.steps)
            if schedule is None:
                continue  # an invalid proposal costs nothing (the proposer validates; this is a backstop)
            child = Node(schedule, node, proposal)
            node.children.append(child)
            children.append(child)
            known.add(proposal.steps)
        if not children:
            node.exhausted = True
        return children

    @staticmethod
    def _backpropagate(node: Optional[Node], reward: float) -> None:
        while node is not None:
            node.visits += 1
            node.value += reward
            node = node.parent

    def tree(self) -> nx.DiGraph:
        """The search tree for inspection: node attributes trace, time_s, visits, value, reasoning."""
        graph = nx.DiGraph()
        if self.root is None:
            return graph
        stack, ids = [self.root], {id(self.root): 0}
        while stack:
            node = stack.pop()
            n = ids[id(node)]
            graph.add_node(n, trace=" ; ".join(str(s) for s in node.schedule.steps), time_s=node.time_s or -1.0,
                           visits=node.visits, value=node.value,
                           reasoning=node.proposal.reasoning if node.proposal else "")
            for child in node.children:
                ids[id(child)] = len(ids)
                graph.add_edge(n, ids[id(child)], steps=" ; ".join(str(s) for s in child.proposal.steps))  # type: ignore[union-attr]
                stack.append(child)
        return graph
