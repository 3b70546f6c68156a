from django.contrib.auth.models import Permission

from triage.permissions import MONEY_PERMISSION, agents_group_ensure


def test_the_agents_group_works_the_inbox_and_never_moves_money(make_user):
    # given: the group made once, then a permission added to it by hand
    agents = agents_group_ensure()
    agents.permissions.add(Permission.objects.get(codename="approve_money", content_type__app_label="approvals"))

    # when: ensured again (the demo and a deploy step call it each time)
    again = agents_group_ensure()

    # then: the same group, with the inbox permissions and not the money one
    assert again.pk == agents.pk
    user = make_user("sam", roles=("agent",))
    assert user.has_perm("approvals.add_decision") and user.has_perm("triage.view_pipelinerun")
    assert not user.has_perm(MONEY_PERMISSION)
    assert not user.has_perm("triage.change_gatepolicy")
